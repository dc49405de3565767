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

"""ocf:tripleo-ipsec:vip against a real libreswan 5.2 pluto.

Libreswan 5.2 is the trixie chroot's (tests/test_libreswan5.py), pluto in
a scratch network namespace.  start, monitor and stop run the agent in the
chroot, as on a node with libreswan 5: its sh, awk and ip, and libreswan's
programs where the agent finds them by default (/usr/libexec/ipsec).  The
chroot has no resource-agents: the agent and the host's OCF shell library
are copied into the temporary directory it shares with the host.

ocf-tester is the host's (it runs the agent as nobody for meta-data, which
cannot enter a chroot), so it runs the agent on the host, with ``ipsec=``
naming 5.2's programs in the chroot: the agent's whack is 5.2's.
"""

import glob
import os
import shlex
import shutil
import stat

from tests import base
from tests import pluto
from tests import test_libreswan5 as five
from tests import test_ocf

LIBEXEC5 = '/usr/libexec/ipsec'


def _script(path, text):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP |
             stat.S_IROTH | stat.S_IXOTH)


def ipsec5_command(directory):
    """An ``ipsec`` for the agent on the host that is 5.2's, in the chroot.

    ``ipsec --directory`` names where whack and addconn are (the agent
    calls them directly), each 5.2's own program run in the chroot; any
    other command is 5.2's ipsec.  Returns its path.
    """
    enter = shlex.join(five.enter())
    libexec = os.path.join(directory, 'libexec')
    os.makedirs(libexec)
    for program in ('whack', 'addconn'):
        _script(os.path.join(libexec, program),
                '#!/bin/sh\nexec %s %s "$@"\n'
                % (enter, shlex.quote(os.path.join(LIBEXEC5, program))))
    path = os.path.join(directory, 'ipsec')
    _script(path, '#!/bin/sh\n'
            '[ "$1" = --directory ] && exec echo %s\n'
            'exec %s ipsec "$@"\n' % (shlex.quote(libexec), enter))
    return path


class TestAgentOn5(test_ocf.AgentTests, five.Libreswan5TestCase):

    # 5.x's words for a conn that traps (negotiating: initiated, no SA yet)
    TRAP = {'routed-ondemand', 'routed-negotiation'}
    # pluto 5.x unorients a conn whose both ends are here
    OWN_WITH_VIP = 'unoriented'

    def skip_unless_available(self):
        if test_ocf.ocf_unavailable():
            self.skipTest(test_ocf.ocf_unavailable())
        if not shutil.which('ocf-tester'):
            self.skipTest('resource-agents is not installed '
                          '(apt-get install resource-agents)')

    def render_bundle(self, the_plan):
        # written in 5.x syntax, as the role's apply leaves it on the node
        return self.render5(the_plan)[0]

    def start_pluto(self, addresses, secrets_glob):
        scratch = self.pluto5(addresses, secrets_glob)
        self.assertEqual((5, 2), scratch.lw.version)
        # the agent and OCF's shell library, where the chroot sees them
        self.chroot_files = self.tempdir()
        self.chroot_agent = os.path.join(self.chroot_files, 'vip')
        shutil.copy(test_ocf.AGENT, self.chroot_agent)
        ocf_lib = os.path.join(self.chroot_files, 'ocf', 'lib', 'heartbeat')
        os.makedirs(ocf_lib)
        for path in glob.glob(os.path.join(test_ocf.OCF_ROOT, 'lib',
                                           'heartbeat', 'ocf-*')):
            shutil.copy(path, ocf_lib)
        return scratch, scratch.lw

    def env(self):
        return dict(super().env(), PATH='/usr/sbin:/usr/bin:/sbin:/bin',
                    OCF_ROOT=os.path.join(self.chroot_files, 'ocf'))

    def agent_argv(self, action):
        return five.enter(self.pluto.netns) + [self.chroot_agent, action]

    def test_the_agent_runs_5_2(self):
        # what start, monitor and stop run: the chroot's whack
        result = pluto.run(five.enter(self.pluto.netns) + [
            'sh', '-c', '%s/whack --version' % LIBEXEC5])
        self.assertIn('5.2', result.stdout + result.stderr)

    def test_ocf_tester(self):
        ipsec = ipsec5_command(self.tempdir())
        result = pluto.run([os.path.join(os.path.dirname(ipsec), 'libexec',
                                         'whack'), '--version'])
        self.assertIn('5.2', result.stdout + result.stderr)
        self.ocf_tester('-o', 'ipsec=%s' % ipsec)


class TestIpsec5Command(base.TestCase):

    def test_whack_and_addconn_are_5_2s(self):
        why = five.available()
        if why:
            self.skipTest(why)
        ipsec = ipsec5_command(self.tempdir())
        self.assertIn('Libreswan 5.2', pluto.run([ipsec, '--version']).stdout)
        libexec = pluto.run([ipsec, '--directory']).stdout.strip()
        self.assertEqual(os.path.join(os.path.dirname(ipsec), 'libexec'),
                         libexec)
        result = pluto.run([os.path.join(libexec, 'whack'), '--version'])
        self.assertIn('5.2', result.stdout + result.stderr)
        # addconn says no version: 5.x's takes keyexchange=, 4.x's refuses
        # it (tests/test_libreswan5.py TestVersion)
        conf = os.path.join(self.tempdir(), 'ipsec.conf')
        with open(conf, 'w') as f:
            f.write('config setup\n\nconn t\n\tauthby=secret\n'
                    '\tkeyexchange=ikev2\n\tleft=192.0.2.1\n'
                    '\tright=192.0.2.2\n\tauto=add\n')
        result = pluto.run([os.path.join(libexec, 'addconn'), '--config',
                            conf, '--checkconfig'])
        self.assertEqual((0, ''), (result.returncode,
                                   result.stdout + result.stderr))
