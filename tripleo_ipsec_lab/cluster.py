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

"""A real corosync + pacemaker cluster of the lab's controllers.

Each controller runs corosync 3 (knet, over the ctlplane bridge) and
pacemaker 2 in its network namespace and, as ``cluster-node.sh`` sets up,
in mount, PID and UTS namespaces of its own: they keep their state in
/run, /dev/shm and /var/lib, which the guest's namespaces would otherwise
share (with network namespaces alone, an earlier try never got past
"partition WITHOUT quorum").  The cluster starts from the CIB the deploy
built with pcs (THT's IPaddr2 VIPs, our ``ocf:tripleo-ipsec:vip``
resources and their constraints), with only one VIP's two resources,
and moves them with ``crm_resource --move``: pacemaker decides, its
executor runs the real IPaddr2 and our agent.

The totem timers are sized for the guest's one CPU (a token of 3 s let
corosync go unscheduled longer than that while forming), and the CIB
comes with ``dc-deadtime=5s``: pacemaker's default 20 s wait for a DC was
most of the time to form.
"""

import os
import re
import shutil
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_SCRIPT = 'cluster-node.sh'
# in the guest's own tmpfs: what the nodes write stays in the guest
STATE = '/var/lib/tripleo-ipsec-lab/cluster'
COROSYNC_CONF = '''totem {
    version: 2
    cluster_name: tripleo-ipsec-lab
    transport: knet
    token: 10000
    consensus: 12000
    join: 1000
    token_retransmits_before_loss_const: 10
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
%s}
quorum {
    provider: corosync_votequorum
    two_node: 0
    wait_for_all: 0
}
logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: on
}
'''
NODE = '''    node {
        ring0_addr: %s
        name: %s
        nodeid: %d
    }
'''
ONLINE = re.compile(r'<node name="([^"]+)" id="\d+" online="true"')
STARTED = re.compile(r'<resource id="([^"]+)"[^>]* role="Started"[^>]*>\s*'
                     r'<node name="([^"]+)"')


class ClusterError(Exception):
    pass


class Cluster(object):
    """The controllers' cluster in GUEST, from the deploy's CIB file."""

    def __init__(self, lab, nodes, cib, enabled, timeout):
        self.lab = lab
        self.guest = lab.guest
        self.nodes = list(nodes)         # name, in the CIB's node id order
        self.cib = cib
        self.enabled = set(enabled)      # the resources left to start
        self.timeout = timeout
        self.dir = os.path.join(lab.work, 'cluster')
        self.pids = {}                   # node -> PID 1 of its namespace
        self.figures = {}

    # -- files ------------------------------------------------------------
    def _seed_cib(self):
        """The deploy's CIB with only the resources we move.

        The others go (pcs takes their constraints with them): pacemaker
        probes every resource it knows on every node as it starts, 2 s a
        probe in the guest, stopped or not.
        """
        path = os.path.join(self.dir, 'cib.xml')
        shutil.copy(self.cib, path)
        env = dict(os.environ, CIB_file=path)
        with open(path) as f:
            ids = re.findall(r'<primitive[^>]* id="([^"]+)"', f.read())
        missing = self.enabled - set(ids)
        if missing:
            raise ClusterError('no resource %s in %s' % (sorted(missing),
                                                         self.cib))
        commands = [['crm_attribute', '-t', 'crm_config', '-n', name, '-v',
                     value] for name, value in (('dc-deadtime', '5s'),
                                                ('stonith-enabled',
                                                 'false'))]
        commands += [['pcs', '-f', path, 'resource', 'delete', rid]
                     for rid in ids if rid not in self.enabled]
        for argv in commands:
            result = subprocess.run(argv, capture_output=True, text=True,
                                    env=env, timeout=120)
            if result.returncode:
                raise ClusterError('%s: %s' % (' '.join(argv),
                                               result.stderr.strip()))
        return path

    def _write(self, addresses):
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, 'corosync.conf')
        with open(conf, 'w') as f:
            f.write(COROSYNC_CONF % ''.join(
                NODE % (addresses[n], n, i)
                for i, n in enumerate(self.nodes, 1)))
        script = os.path.join(self.dir, NODE_SCRIPT)
        shutil.copy(os.path.join(HERE, NODE_SCRIPT), script)
        os.chmod(script, 0o755)
        return conf, self._seed_cib(), script

    # -- life cycle -------------------------------------------------------
    def start(self, addresses, pluto_rundirs):
        """Start every node; returns once all are online and ENABLED run.

        ADDRESSES: {node: its address on the network corosync uses};
        PLUTO_RUNDIRS: {node: its pluto's run directory}.
        """
        conf, cib, script = self._write(addresses)
        lines = []
        for node in self.nodes:
            state = '%s/%s' % (STATE, node)
            lines += ['mkdir -p %s/etc-corosync %s/var-lib-pacemaker' % (
                state, state),
                'cp -a /var/lib/pacemaker/. %s/var-lib-pacemaker/' % state,
                'cp %s %s/etc-corosync/corosync.conf' % (conf, state),
                'cp %s %s/var-lib-pacemaker/cib/cib.xml' % (cib, state),
                'chown -R hacluster:haclient %s/var-lib-pacemaker' % state]
        self.guest.run(['sh', '-ec', '\n'.join(lines)])
        started = time.monotonic()
        for node in self.nodes:
            state = '%s/%s' % (STATE, node)
            logs = os.path.join(self.dir, 'logs', node)
            os.makedirs(logs, exist_ok=True)
            self.pids[node] = self.guest.spawn(
                ['unshare', '-m', '-u', '-p', '-f', '--mount-proc',
                 '--propagation', 'private', script, node, state,
                 pluto_rundirs[node], logs], netns=node)
        inits = {}
        for node, pid in self.pids.items():
            inits[node] = self._child(pid)
        self.pids = inits
        online, error = (), ''
        deadline = started + self.timeout
        while time.monotonic() < deadline:
            # it fails until pacemaker answers: the last error is reported
            out = self.crm(self.nodes[0], ['crm_mon', '-1', '--output-as',
                                           'xml'], check=False, timeout=30)
            error = out.stderr.strip() or error
            online = set(ONLINE.findall(out.stdout))
            running = dict(STARTED.findall(out.stdout))
            if online == set(self.nodes) and \
                    'all_online_s' not in self.figures:
                self.figures['all_online_s'] = round(
                    time.monotonic() - started, 1)
                self.lab.say('  cluster: all %d nodes online after %.1f s'
                             % (len(self.nodes),
                                self.figures['all_online_s']))
            if online == set(self.nodes) and \
                    self.enabled <= set(running):
                self.figures['resources_started_s'] = round(
                    time.monotonic() - started, 1)
                return running
            time.sleep(1)
        raise ClusterError(
            'the cluster did not form with %s running in %d s (online: %s;'
            ' crm_mon: %s); see %s' % (sorted(self.enabled), self.timeout,
                                       sorted(online), error[-300:],
                                       os.path.join(self.dir, 'logs')))

    def _child(self, pid):
        """PID 1 of the namespace that the unshare with PID started."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = self.guest.run(['cat', '/proc/%d/task/%d/children'
                                  % (pid, pid)], check=False)
            if out.returncode == 0 and out.stdout.split():
                return int(out.stdout.split()[0])
            done = self.guest.run(['test', '-d', '/proc/%d' % pid],
                                  check=False)
            if done.returncode:
                raise ClusterError('a cluster node exited: %s'
                                   % self.guest.wait(pid).stderr[-500:])
            time.sleep(0.2)
        raise ClusterError('no cluster node under pid %d' % pid)

    def crm(self, node, argv, check=True, timeout=120):
        """Run a pacemaker client in NODE's namespaces."""
        result = self.guest.run(
            ['nsenter', '-t', str(self.pids[node]), '-m', '-n', '-u', '-p']
            + argv, timeout=timeout, check=False)
        if check and result.returncode:
            raise ClusterError('%s on %s: %s' % (' '.join(argv[:3]), node,
                                                 result.stderr.strip()))
        return result

    def move(self, resource, node):
        """``crm_resource --move``, run on the first node.

        Any node's client reaches the cluster's CIB.
        """
        self.crm(self.nodes[0], ['crm_resource', '--move', '-r', resource,
                                 '-N', node])

    def stop(self):
        """Kill every node: PID 1 of a PID namespace takes all with it."""
        for node, pid in self.pids.items():
            self.guest.run(['kill', '-9', str(pid)], check=False)
        self.pids = {}
