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

"""The lab's loss count, read from ``ping -D`` output as ping prints it."""

import testtools

from tripleo_ipsec_lab import traffic


def log(seqs, sent):
    lines = ['PING 172.16.2.11 (172.16.2.11) 56(84) bytes of data.']
    lines += ['[1796306660.%06d] 64 bytes from 172.16.2.11: icmp_seq=%d '
              'ttl=64 time=0.5 ms' % (s, s) for s in seqs]
    lines += ['', '--- 172.16.2.11 ping statistics ---',
              '%d packets transmitted, %d received, 0%% packet loss, '
              'time 100ms' % (sent, len(seqs))]
    return '\n'.join(lines) + '\n'


class TestLosses(testtools.TestCase):

    def test_none_lost(self):
        self.assertEqual((100, 100, 0, []),
                         traffic.losses(log(range(1, 101), 100)))

    def test_the_requests_in_flight_at_the_stop_are_not_lost(self):
        self.assertEqual(0, traffic.losses(log(range(1, 99), 100))[2])

    def test_a_gap_inside_is_lost(self):
        seqs = [s for s in range(1, 101) if not 40 <= s <= 45]
        sent, received, lost, which = traffic.losses(log(seqs, 100))
        self.assertEqual((100, 94, 6), (sent, received, lost))
        self.assertEqual([[40, 45]], traffic.ranges(which))

    def test_a_dead_end_is_lost_not_in_flight(self):
        # the replies stopped at 50 and never came back: a dead pair
        # cannot read as a clean one
        sent, received, lost, which = traffic.losses(log(range(1, 51), 100))
        self.assertEqual(48, lost)
        self.assertEqual([[51, 98]], traffic.ranges(which))

    def test_no_reply_at_all(self):
        self.assertEqual((10, 0, 10), traffic.losses(log([], 10))[:3])

    def test_a_duplicate_reply_counts_once(self):
        text = log([1, 2, 2, 3], 3)
        self.assertEqual((3, 3, 0), traffic.losses(text)[:3])

    def test_no_summary_is_an_error(self):
        self.assertRaises(ValueError, traffic.losses, 'PING x\n')
