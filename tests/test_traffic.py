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

"""The lab's loss count: ``echo.py`` between two network namespaces.

Two namespaces joined by a veth, ``echo.py`` in each as the lab runs it in
every node; the check must be able to fail: a moment with a kernel block
policy on the way out loses the probes sent then, and a peer that does not
answer loses them all.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

from tests import base
from tripleo_ipsec.node import wire
from tripleo_ipsec_lab import echo
from tripleo_ipsec_lab import traffic

ECHO = echo.__file__
A, B = '198.51.100.1', '198.51.100.2'


def _run(args):
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if result.returncode:
        raise RuntimeError('%s: %s' % (' '.join(args), result.stderr))
    return result


class TestEcho(base.TestCase):

    def setUp(self):
        super(TestEcho, self).setUp()
        if os.geteuid() != 0:
            self.skipTest('needs root (network namespaces)')
        tag = uuid.uuid4().hex[:8]
        self.ns = {A: 'techo-a-' + tag, B: 'techo-b-' + tag}
        for ns in self.ns.values():
            _run(['ip', 'netns', 'add', ns])
            self.addCleanup(subprocess.run, ['ip', 'netns', 'del', ns])
        _run(['ip', 'link', 'add', 've-' + tag, 'netns', self.ns[A], 'type',
              'veth', 'peer', 'name', 'vf-' + tag, 'netns', self.ns[B]])
        for address, dev in ((A, 've-' + tag), (B, 'vf-' + tag)):
            self.ip(address, 'link', 'set', 'lo', 'up')
            self.ip(address, 'addr', 'add', address + '/24', 'dev', dev)
            self.ip(address, 'link', 'set', dev, 'up')
        self.work = self.tempdir()

    def ip(self, where, *args):
        return _run(['ip', 'netns', 'exec', self.ns[where], 'ip'] +
                    list(args))

    def start(self, where, *targets):
        report = os.path.join(self.work, '%s.json' % where)
        proc = subprocess.Popen(
            ['ip', 'netns', 'exec', self.ns[where], sys.executable, ECHO,
             str(traffic.ECHO_PORT), traffic.INTERVAL, report] +
            ['%s=%s' % (t, t) for t in targets])
        self.addCleanup(proc.kill)
        deadline = time.monotonic() + 30
        while not os.path.exists(report + '.ready'):
            self.assertLess(time.monotonic(), deadline, 'echo.py not ready')
            time.sleep(0.02)
        return proc, report

    def go(self, proc, report):
        proc.send_signal(signal.SIGUSR1)
        return proc, report

    def stop(self, proc, report):
        proc.send_signal(signal.SIGINT)
        self.assertEqual(0, proc.wait(30))
        with open(report) as f:
            return json.load(f)

    def test_every_probe_answered(self):
        b = self.start(B)
        a = self.go(*self.start(A, B))
        time.sleep(1.5)
        got = self.stop(*a)['targets'][0]
        self.stop(*b)
        self.assertGreater(got['sent'], 20)
        self.assertEqual((got['sent'], [], {}),
                         (got['received'], got['lost_seqs'],
                          got['send_errors']))

    def test_a_blocked_moment_is_lost_and_counted(self):
        b = self.start(B)
        a = self.go(*self.start(A, B))
        time.sleep(0.5)
        block = ['xfrm', 'policy', 'add', 'src', A + '/32', 'dst', B + '/32',
                 'dir', 'out', 'action', 'block']
        self.ip(A, *block)
        time.sleep(0.3)
        self.ip(A, 'xfrm', 'policy', 'delete', 'src', A + '/32', 'dst',
                B + '/32', 'dir', 'out')
        time.sleep(0.5)
        got = self.stop(*a)['targets'][0]
        self.stop(*b)
        lost = got['lost_seqs']
        self.assertGreater(len(lost), 5)
        # one run of consecutive probes, each refused on the way out
        self.assertEqual([[lost[0], lost[-1]]], traffic.ranges(lost))
        self.assertEqual(len(lost), sum(got['send_errors'].values()))
        self.assertEqual(got['sent'] - len(lost), got['received'])

    def test_a_second_address_answers_from_itself(self):
        # a VIP on B: the reply must come from the VIP, not B's own address
        vip = '198.51.100.9'
        self.ip(B, 'addr', 'add', vip + '/32', 'dev', 'lo')
        self.ip(A, 'route', 'add', vip + '/32', 'via', B)
        b = self.start(B)
        a = self.go(*self.start(A, vip, B))
        time.sleep(1)
        got = self.stop(*a)['targets']
        answered = self.stop(*b)['answered']
        self.assertEqual([vip, B], [t['address'] for t in got])
        for t in got:
            self.assertGreater(t['sent'], 20, t['address'])
            self.assertEqual([], t['lost_seqs'], t['address'])
        self.assertGreaterEqual(answered, got[0]['sent'] + got[1]['sent'])

    def test_a_silent_peer_loses_everything(self):
        a = self.go(*self.start(A, B))
        time.sleep(0.5)
        got = self.stop(*a)['targets'][0]
        self.assertGreater(got['sent'], 5)
        self.assertEqual((0, list(range(1, got['sent'] + 1))),
                         (got['received'], got['lost_seqs']))

    def test_probes_carry_the_wire_marker(self):
        # a capture finds a probe that leaves in clear by this marker
        self.assertEqual(wire.MARKER, echo.MARKER)


class TestLost(base.TestCase):

    def test_lost_and_ranges(self):
        self.assertEqual([3, 5, 6], echo.lost(6, {1, 2, 4}))
        self.assertEqual([], echo.lost(0, set()))
        self.assertEqual([[3, 3], [5, 6]],
                         traffic.ranges(echo.lost(6, {1, 2, 4})))
