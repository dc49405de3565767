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

"""A real pluto in a scratch network namespace, for tests.

The namespace has only ``lo``, with the addresses a node would have, so
nothing pluto does can leave it.  Pluto starts with an empty config and
conns are added by name (``auto=add`` style), as research/deps.md §7
describes: nothing is initiated.
"""

import os
import shutil
import subprocess
import tempfile
import time
import uuid

PLUTO = '/usr/libexec/ipsec/pluto'
TIMEOUT = 60


def available():
    """Why a real pluto cannot run here, or None when it can."""
    if not shutil.which('ipsec') or not os.path.exists(PLUTO):
        return 'libreswan is not installed (apt-get install libreswan)'
    if os.geteuid() != 0:
        return 'needs root for network namespaces'
    if not shutil.which('ip'):
        return 'iproute2 is not installed'
    return None


def run(args, **kwargs):
    kwargs.setdefault('timeout', TIMEOUT)
    check = kwargs.pop('check', False)
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if check and result.returncode:
        raise RuntimeError('%s: rc %d: %s' % (' '.join(args[:6]),
                                              result.returncode,
                                              result.stderr.strip()))
    return result


class ScratchPluto(object):

    def __init__(self, addresses, secrets_glob=None, ipsecdir=None):
        self.netns = 'tipsec-%s' % uuid.uuid4().hex[:10]
        self.dir = tempfile.mkdtemp(prefix='tripleo-ipsec-pluto-')
        self.nss = os.path.join(self.dir, 'nss')
        self.rundir = os.path.join(self.dir, 'run')
        self.ctl = os.path.join(self.rundir, 'pluto.ctl')
        self.log = os.path.join(self.dir, 'pluto.log')
        self.secrets = os.path.join(self.dir, 'ipsec.secrets')
        self.empty = os.path.join(self.dir, 'empty.conf')
        os.makedirs(self.nss)
        os.makedirs(self.rundir)
        with open(self.empty, 'w') as f:
            f.write('config setup\n')
        with open(self.secrets, 'w') as f:
            if secrets_glob:
                f.write('include %s\n' % secrets_glob)
        self._check(['ipsec', 'initnss', '--nssdir', self.nss])
        self._check(['ip', 'netns', 'add', self.netns])
        self.exec_(['ip', 'link', 'set', 'lo', 'up'])
        for address in addresses:
            plen = '/64' if ':' in address else '/24'
            extra = ['nodad'] if ':' in address else []
            self.exec_(['ip', 'addr', 'add', address + plen, 'dev', 'lo']
                       + extra)
        # --ipsecdir: where pluto finds policies/ (the group files)
        self.exec_([PLUTO, '--config', self.empty, '--nssdir', self.nss,
                    '--rundir', self.rundir, '--secretsfile', self.secrets,
                    '--logfile', self.log] +
                   (['--ipsecdir', ipsecdir] if ipsecdir else []))
        deadline = time.monotonic() + 20
        while not os.path.exists(self.ctl):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError('pluto did not start')
            time.sleep(0.05)

    def _check(self, args):
        result = run(args)
        if result.returncode:
            raise RuntimeError('%s: rc %d: %s' % (' '.join(args),
                                                  result.returncode,
                                                  result.stderr.strip()))
        return result

    def exec_(self, args):
        return self._check(['ip', 'netns', 'exec', self.netns] + args)

    def addconn(self, config, names):
        """Add conns by name from ``config``; returns the CompletedProcess."""
        return run(['ip', 'netns', 'exec', self.netns, 'ipsec', 'addconn',
                    '--ctlsocket', self.ctl, '--config', config] + list(names))

    def whack(self, *args):
        return run(['ip', 'netns', 'exec', self.netns, 'ipsec', 'whack',
                    '--ctlsocket', self.ctl] + list(args))

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        if os.path.exists(self.ctl):
            self.whack('--shutdown')
        pids = run(['ip', 'netns', 'pids', self.netns]).stdout.split()
        for pid in pids:
            run(['kill', '-9', pid])
        run(['ip', 'netns', 'del', self.netns])
        shutil.rmtree(self.dir, ignore_errors=True)
