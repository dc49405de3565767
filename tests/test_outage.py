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

"""The lab's outage measure: a dead VIP, a VIP answering from the wrong
node and a clean move, on replies and on a pcap that tcpdump reads too."""

import ipaddress
import os
import shutil
import struct
import subprocess

from tests import base
from tripleo_ipsec.node import wire
from tripleo_ipsec_lab import outage

OLD, NEW, PINGER_MAC = '02:00:00:00:00:01', '02:00:00:00:00:02', \
    '02:00:00:00:00:09'
VIP, PINGER = '172.16.2.50', '172.16.2.30'


def pings(first, last, who, every=0.01):
    """Replies from WHO every EVERY seconds from FIRST to LAST."""
    n = int(round((last - first) / every)) + 1
    return [(round(first + i * every, 6), who) for i in range(n)]


def frame(src_mac, dst_mac, src, dst, proto, payload):
    header = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 0, 0,
                         64, proto, 0, ipaddress.ip_address(src).packed,
                         ipaddress.ip_address(dst).packed)
    return (bytes.fromhex(dst_mac.replace(':', '')) +
            bytes.fromhex(src_mac.replace(':', '')) + b'\x08\x00' +
            header + payload)


def pcap(frames):
    """Pcap bytes (Ethernet) of [(time, frame)]."""
    data = struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
    for ts, f in frames:
        data += struct.pack('<IIII', int(ts), int(round(ts % 1 * 1e6)),
                            len(f), len(f)) + f
    return data


class TestMeasure(base.TestCase):

    START, END = 100.0, 108.0

    def test_a_clean_move(self):
        series = (pings(95.0, 100.3, OLD) + pings(100.95, 108.0, NEW))
        m = outage.measure(series, self.START, self.END, NEW)
        self.assertTrue(m['recovered'])
        self.assertEqual(650, m['outage_ms'])
        self.assertEqual(950, m['first_reply_ms'])
        self.assertEqual(0, m['others_after'])

    def test_a_dead_vip_is_the_whole_window_not_a_short_gap(self):
        # the old holder answers while its stop runs, then nothing: the
        # old measure read this as the gap between two of those replies
        series = pings(95.0, 100.4, OLD)
        m = outage.measure(series, self.START, self.END, NEW)
        self.assertFalse(m['recovered'])
        self.assertEqual(8000, m['outage_ms'])

    def test_replies_from_the_old_holder_do_not_count(self):
        # the VIP "recovered" only through the wrong node: a failure
        series = pings(95.0, 108.0, OLD)
        m = outage.measure(series, self.START, self.END, NEW)
        self.assertFalse(m['recovered'])
        self.assertEqual(8000, m['outage_ms'])

    def test_a_gap_after_the_first_reply_counts(self):
        series = (pings(95.0, 100.2, OLD) + pings(100.5, 101.0, NEW) +
                  pings(103.0, 108.0, NEW))
        m = outage.measure(series, self.START, self.END, NEW)
        self.assertEqual(2000, m['outage_ms'])

    def test_replies_stopping_before_the_window_ends_count(self):
        series = pings(95.0, 100.2, OLD) + pings(100.5, 102.0, NEW)
        m = outage.measure(series, self.START, self.END, NEW)
        self.assertEqual(6000, m['outage_ms'])

    def test_the_old_holder_answering_after_the_new_one_is_counted(self):
        series = sorted(pings(95.0, 100.2, OLD) + pings(100.5, 108.0, NEW) +
                        [(101.005, OLD)])
        m = outage.measure(series, self.START, self.END, NEW)
        self.assertEqual(1, m['others_after'])

    def test_no_reply_before_the_move_counts_from_its_start(self):
        m = outage.measure(pings(100.7, 108.0, NEW), self.START, self.END,
                           NEW)
        self.assertEqual(700, m['outage_ms'])
        # a VIP dead since an earlier move: that move's failure, not this
        series = pings(40.0, 50.0, OLD) + pings(100.4, 108.0, NEW)
        m = outage.measure(series, self.START, self.END, NEW)
        self.assertEqual(400, m['outage_ms'])

    def test_steady(self):
        times = [t for t, _ in pings(100.0, 100.5, OLD) +
                 pings(101.2, 103.0, NEW)]
        self.assertAlmostEqual(102.2, outage.steady(times, 100.6), 3)
        self.assertIsNone(outage.steady(times[:60], 100.6))
        self.assertIsNone(outage.steady([], 100.0))

    def test_ping_output(self):
        text = ('PING 172.16.2.50 (172.16.2.50) 56(84) bytes of data.\n'
                '[1700000000.125001] 64 bytes from 172.16.2.50: icmp_seq=1 '
                'ttl=64 time=0.5 ms\n'
                '[1700000000.135001] From 172.16.2.30 icmp_seq=2 '
                'Destination Host Unreachable\n'
                '[1700000000.145001] 64 bytes from 172.16.2.50: icmp_seq=3 '
                'ttl=64 time=0.5 ms\n')
        self.assertEqual([1700000000.125001, 1700000000.145001],
                         outage.replies(text))


class TestCapture(base.TestCase):

    def frames(self):
        esp = b'\x00\x00\x10\x01' + b'\x00' * 40
        esp2 = b'\x00\x00\x20\x02' + b'\x00' * 40
        records = []
        for ts, _ in pings(10.0, 10.3, OLD):
            records.append((ts, frame(OLD, PINGER_MAC, VIP, PINGER, 50,
                                      esp)))
            # the pinger's own requests, and ESP to somebody else
            records.append((ts + 0.001, frame(PINGER_MAC, OLD, PINGER, VIP,
                                              50, esp)))
        records.append((10.35, frame(OLD, '02:00:00:00:00:07', VIP,
                                     '172.16.2.31', 50, esp)))
        for ts, _ in pings(10.9, 11.5, NEW):
            records.append((ts, frame(NEW, PINGER_MAC, VIP, PINGER, 50,
                                      esp2)))
        return records

    def test_esp_frames_and_attribution(self):
        data = pcap(self.frames())
        frames = outage.esp_frames(data, VIP, PINGER)
        self.assertEqual(31 + 61, len(frames))
        self.assertEqual({OLD, NEW}, {mac for _, mac, _ in frames})
        self.assertEqual({'00001001', '00002002'},
                         {spi for _, _, spi in frames})
        # ping prints each reply a little after its frame crossed
        times = [ts + 0.0004 for ts, _, _ in frames] + [9.5]
        series = outage.attribute(times, frames)
        self.assertEqual((9.5, None), series[0])
        self.assertEqual([OLD] * 31 + [NEW] * 61,
                         [who for _, who in series[1:]])
        m = outage.measure(series, 10.2, 11.5, NEW)
        self.assertTrue(m['recovered'])
        self.assertEqual(600, m['outage_ms'])

    def test_tcpdump_reads_the_same_frames(self):
        if not shutil.which('tcpdump'):
            self.skipTest('tcpdump is not installed (tools/install)')
        path = os.path.join(self.tempdir(), 'move.pcap')
        with open(path, 'wb') as f:
            f.write(pcap(self.frames()))
        out = subprocess.run(
            ['tcpdump', '-e', '-nn', '-r', path, 'esp and src %s and dst %s'
             % (VIP, PINGER)], capture_output=True, text=True, check=True)
        macs = [line.split()[1] for line in out.stdout.splitlines()]
        self.assertEqual([mac for _, mac, _ in outage.esp_frames(
            wire.read(path), VIP, PINGER)], macs)


class TestSummary(base.TestCase):

    def test_a_failed_move_says_so(self):
        from tripleo_ipsec_lab import run
        move = {'from': 'overcloud-controller-0',
                'to': 'overcloud-controller-1', 'cleartext': 0,
                'recovered': False, 'outage_ms': 8000,
                'capture_outage_ms': 8000, 'esp_restored_ms': None}
        good = dict(move, recovered=True, outage_ms=640,
                    capture_outage_ms=641, esp_restored_ms=900)
        text = run.summary({
            'ok': False, 'phases': [], 'checks': [],
            'failover': {'vip': VIP, 'peer': 'overcloud-novacompute-0',
                         'outage_target_ms': 1000,
                         'ours': {'moves': [good], 'control': move},
                         'road-warrior': {'moves': [move]}}})
        self.assertIn('NOT recovered: no reply from controller-1 in the '
                      '8000 ms window', text)
        self.assertIn('outage 640 ms (capture 641 ms), ESP under a new SPI '
                      'from the new holder after 900 ms', text)
        self.assertNotIn('None', text)
