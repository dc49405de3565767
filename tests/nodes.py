# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Overcloud nodes as network namespaces, each with its own /etc and pluto.

``ip netns exec`` bind-mounts ``/etc/netns/<ns>/<entry>`` over
``/etc/<entry>``, so a module that Ansible runs in a namespace (through an
interpreter wrapper) writes ``/etc/ipsec.d/...`` into that node's own copy.
Every node runs its own pluto with its own NSS database, secrets and
control socket.  The namespaces have only ``lo``: nothing leaves them.
"""

import json
import os
import shutil
import sys
import tempfile
import time
import uuid

from tests import pluto
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec_lab import overcloud

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = os.path.join(TOP, 'ansible', 'roles')


def _alive(pid):
    """Whether process PID runs (a zombie does not)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(') ', 1)[-1][:1] != 'Z'
    except FileNotFoundError:
        return False


class Node(object):

    def __init__(self, name, addresses, workdir):
        self.name = name
        self.netns = 'tipsec-%s' % uuid.uuid4().hex[:10]
        self.etc = os.path.join('/etc/netns', self.netns)
        self.rundir = '/run/pluto-%s' % self.netns
        self.ctlsocket = os.path.join(self.rundir, 'pluto.ctl')
        self.log = os.path.join(workdir, '%s-pluto.log' % name)
        self.python = os.path.join(workdir, '%s-python' % name)
        os.makedirs(os.path.join(self.etc, 'ipsec.d'))
        # its own /etc/systemd too: the apply module writes the ipsec
        # service's drop-in there (names.SERVICE_DROPIN), not the host's
        os.makedirs(os.path.join(self.etc, 'systemd'))
        with open(os.path.join(self.etc, 'ipsec.conf'), 'w') as f:
            f.write('config setup\n\ninclude /etc/ipsec.d/*.conf\n')
        with open(os.path.join(self.etc, 'ipsec.secrets'), 'w') as f:
            f.write('include /etc/ipsec.d/*.secrets\n')
        with open(self.python, 'w') as f:
            f.write('#!/bin/sh\nexec ip netns exec %s %s "$@"\n'
                    % (self.netns, sys.executable))
        os.chmod(self.python, 0o755)
        self._check(['ip', 'netns', 'add', self.netns])
        self.exec_(['ip', 'link', 'set', 'lo', 'up'])
        for address in addresses:
            if ':' in address:
                self.exec_(['ip', 'addr', 'add', address + '/64', 'dev', 'lo',
                            'nodad'])
            else:
                self.exec_(['ip', 'addr', 'add', address + '/24', 'dev',
                            'lo'])
        self.exec_(['ipsec', 'initnss', '--nssdir', '/etc/ipsec.d'])
        self.nss_files = set(os.listdir(os.path.join(self.etc, 'ipsec.d')))
        self.lw = libreswan.Libreswan(
            self.ctlsocket, 60, ('ip', 'netns', 'exec', self.netns, 'ipsec'))
        self.start_pluto()

    @staticmethod
    def _check(args):
        result = pluto.run(args)
        if result.returncode:
            raise RuntimeError('%s: %s' % (' '.join(args),
                                           result.stderr.strip()))
        return result

    def exec_(self, args):
        return self._check(['ip', 'netns', 'exec', self.netns] + args)

    def start_pluto(self):
        os.makedirs(self.rundir, exist_ok=True)
        self.exec_([pluto.PLUTO, '--config', '/etc/ipsec.conf',
                    '--secretsfile', '/etc/ipsec.secrets',
                    '--nssdir', '/etc/ipsec.d', '--rundir', self.rundir,
                    '--logfile', self.log])
        self.lw.whack('--status')

    def restart_pluto(self):
        """Shut pluto down, wait for it to be gone, start it again."""
        pidfile = os.path.join(self.rundir, 'pluto.pid')
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        self.lw.whack('--shutdown')
        # gone when its process is: under load pluto may take a while, and
        # a pluto that leaves its files behind must not pass for running
        deadline = time.monotonic() + 60
        while _alive(pid):
            if time.monotonic() > deadline:
                with open(self.log) as f:
                    tail = f.readlines()[-5:]
                raise RuntimeError('pluto of %s did not stop: %s' % (
                    self.name, ''.join(tail)))
            time.sleep(0.2)
        for stale in (self.ctlsocket, pidfile):
            if os.path.exists(stale):
                os.unlink(stale)
        self.start_pluto()

    def conns(self):
        """{name: libreswan.Conn} of our conns pluto has loaded."""
        return {n: c for n, c in self.lw.status().items()
                if n.startswith(names.PREFIX + '-')}

    def psks(self):
        out = self.lw.whack('--listpsks').stdout
        return [tuple(line.split()[-2:]) for line in out.splitlines()
                if ': PSK ' in line]

    def read(self, path):
        """The text of PATH (relative to the node's /, under etc/)."""
        with open(os.path.join(self.etc, os.path.relpath(path, 'etc'))) as f:
            return f.read()

    def files(self):
        """Files in this node's /etc/ipsec.d, NSS database aside."""
        return set(os.listdir(os.path.join(self.etc, 'ipsec.d'))) - \
            self.nss_files

    def stop(self):
        if os.path.exists(self.ctlsocket):
            self.lw.whack('--shutdown', check=False)
        for pid in pluto.run(['ip', 'netns', 'pids',
                              self.netns]).stdout.split():
            pluto.run(['kill', '-9', pid])
        pluto.run(['ip', 'netns', 'del', self.netns])
        shutil.rmtree(self.etc, ignore_errors=True)
        shutil.rmtree(self.rundir, ignore_errors=True)


class Nodes(object):
    """A set of Node, an inventory for them and ansible-playbook runs."""

    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix='tripleo-ipsec-nodes-')
        self.nodes = {}

    def add(self, name, addresses):
        self.nodes[name] = Node(name, addresses, self.workdir)
        return self.nodes[name]

    def remove(self, name):
        self.nodes.pop(name).stop()

    def inventory(self, bundle_dir, **extra):
        hosts = {name: dict(hvars, tripleo_ipsec_bundle_dir=bundle_dir,
                            **extra)
                 for name, hvars in self.connection_vars().items()}
        path = os.path.join(self.workdir, 'inventory.json')
        with open(path, 'w') as f:
            json.dump({'all': {'hosts': hosts}}, f)
        return path

    def playbook(self, playbook, bundle_dir, *args, **extra):
        """Run ansible-playbook; returns (rc, per-host stats, JSON output)."""
        return self.run(playbook, self.inventory(bundle_dir, **extra), *args)

    def connection_vars(self):
        """{host: vars} that point Ansible at each node's namespace."""
        return {name: {'ansible_connection': 'local',
                       'ansible_python_interpreter': node.python,
                       'tripleo_ipsec_ctlsocket': node.ctlsocket,
                       'tripleo_ipsec_manage_package': False,
                       'tripleo_ipsec_manage_service': False,
                       # the node's NSS database by its real path: pluto
                       # reads it as its /etc/ipsec.d, certmonger (outside
                       # the namespace) writes it
                       'tripleo_ipsec_nssdir': os.path.join(node.etc,
                                                            'ipsec.d'),
                       # /usr is shared by the namespaces: not there
                       'tripleo_ipsec_ocf_dir': os.path.join(
                           self.workdir, 'ocf', name)}
                for name, node in self.nodes.items()}

    def run(self, playbook, inventory, *args):
        """ansible-playbook -i INVENTORY PLAYBOOK ARGS, as above."""
        return overcloud.run_playbook(playbook, inventory, self.workdir,
                                      *args, timeout=600)

    def stop(self):
        for node in self.nodes.values():
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
