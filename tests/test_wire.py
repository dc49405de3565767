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

"""tripleo_ipsec.node.wire against real tcpdump captures, and the probe's
target filter against an inventory's variables."""

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import uuid

from tests import base
from tests import pluto
from tripleo_ipsec.node import wire

FILTERS = os.path.join(base.FIXTURES, '..', '..', 'ansible', 'roles',
                       'tripleo_ipsec', 'filter_plugins', 'tripleo_ipsec.py')

SEND = r'''
import socket, sys
marker = sys.argv[1].encode()
esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
esp.sendto(b'\x00\x00\x10\x00' + b'\x00' * 60, ('127.0.0.1', 0))
ike = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ike.sendto(b'\x00' * 40, ('127.0.0.1', 500))
ike6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
ike6.sendto(b'\x00' * 40, ('::1', 4500))
srv = socket.socket(); srv.bind(('127.0.0.1', 7655)); srv.listen(1)
cli = socket.create_connection(('127.0.0.1', 7655))
cli.sendall(marker); conn, _ = srv.accept(); conn.recv(100)
'''


class TestWire(base.TestCase):

    def setUp(self):
        super(TestWire, self).setUp()
        for tool in ('tcpdump', 'ping', 'ip'):
            if not shutil.which(tool):
                self.skipTest('%s is not installed (tools/install)' % tool)
        if os.geteuid() != 0:
            self.skipTest('needs root for a network namespace')
        self.netns = 'tipsec-%s' % uuid.uuid4().hex[:10]
        pluto.run(['ip', 'netns', 'add', self.netns], check=True)
        self.addCleanup(pluto.run, ['ip', 'netns', 'del', self.netns])
        self.ns(['ip', 'link', 'set', 'lo', 'up'])
        self.pcap = os.path.join(self.tempdir(), 'lo.pcap')
        dump = subprocess.Popen(
            ['ip', 'netns', 'exec', self.netns, 'tcpdump', '-i', 'lo', '-nn',
             '--immediate-mode',
             '-U', '-w', self.pcap], stderr=subprocess.PIPE)
        self.assertIn(b'listening on', dump.stderr.readline())
        # ESP, IKE, then cleartext: ICMP and TCP carrying the marker
        self.ns([sys.executable, '-c', SEND, wire.MARKER.decode()])
        self.ns(['ping', '-c', '2', '-i', '0.2', '-p', wire.MARKER.hex(),
                 '127.0.0.1'])
        time.sleep(0.3)
        dump.terminate()
        dump.wait(10)

    def ns(self, args):
        return pluto.run(['ip', 'netns', 'exec', self.netns] + args,
                         check=True)

    def test_esp_and_ike_are_not_cleartext_the_rest_is(self):
        total = wire.count(self.pcap)
        # nothing listens for IKE: the kernel answers each datagram with a
        # port unreachable, which quotes it and is no cleartext
        unreachable = ('(icmp and icmp[0] == 3) or '
                       '(icmp6 and ip6[6] == 58 and ip6[40] == 1)')
        self.assertEqual(2, wire.count(self.pcap, unreachable))
        self.assertEqual(0, wire.cleartext(self.pcap, unreachable))
        ike = 'esp or udp port 500 or udp port 4500'
        esp_ike = wire.count(self.pcap, '%s or %s' % (ike, unreachable))
        self.assertEqual(5, esp_ike)
        self.assertEqual(0, wire.cleartext(self.pcap, ike))
        self.assertEqual(total - esp_ike, wire.cleartext(self.pcap))
        # 2 echo requests + 2 replies, 2 whole copies each; TCP once
        self.assertEqual(4 * 2 + 1, wire.marker_hits(self.pcap))
        self.assertEqual(0, wire.marker_hits(self.pcap, 'esp'))
        self.assertEqual({'packets': total, 'cleartext': total - esp_ike,
                          'marker': 9}, wire.analyse(self.pcap))
        self.assertEqual(
            {'packets': 0, 'cleartext': 0, 'marker': 0},
            wire.analyse(self.pcap, 'host 192.0.2.1'))
        # the same, attributed by address: the IKE datagram to ::1 and its
        # port unreachable are ::1's, everything else 127.0.0.1's
        self.assertEqual(
            {'lo': {'packets': total - 2, 'cleartext': total - esp_ike,
                    'marker': 9},
             'other': {'packets': 2, 'cleartext': 0, 'marker': 0}},
            wire.by_peer(self.pcap, {'lo': ['127.0.0.1'],
                                     'other': ['::1', '192.0.2.1']}))

    def test_a_broken_capture_is_an_error(self):
        with open(self.pcap, 'wb') as f:
            f.write(b'not a pcap')
        self.assertRaises(wire.WireError, wire.count, self.pcap)


class TestProbeTargets(base.TestCase):

    def test_every_peer_on_every_shared_network(self):
        hostvars = {
            'c0': {'tripleo_role_networks': ['ctlplane', 'internal_api',
                                             'external'],
                   'ctlplane_ip': '192.168.24.10',
                   'internal_api_ip': '172.16.2.10',
                   'external_ip': '10.0.0.10'},
            'n0': {'tripleo_role_networks': ['ctlplane', 'internal_api'],
                   'ctlplane_ip': '192.168.24.13',
                   'internal_api_ip': '172.16.2.13'},
            'n1': {'tripleo_role_networks': ['ctlplane', 'internal_api']},
        }
        spec = importlib.util.spec_from_file_location('role_filters',
                                                      FILTERS)
        plugin = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plugin)
        filters = plugin.FilterModule().filters()
        targets = filters['tripleo_ipsec_probe_targets']
        self.assertEqual(
            [{'network': 'ctlplane', 'address': '192.168.24.13'},
             {'network': 'internal_api', 'address': '172.16.2.13'}],
            targets(hostvars, ['c0', 'n0', 'n1'], 'c0'))
        self.assertEqual(
            [{'network': 'ctlplane', 'address': '192.168.24.10'},
             {'network': 'internal_api', 'address': '172.16.2.10'}],
            targets(hostvars, ['c0', 'n0'], 'n0'))

    def test_a_noop_port_is_no_address(self):
        # THT gives a role's unattached network the ctlplane address (a
        # noop port): no peer is there, as the topology says too
        hostvars = {
            'c0': {'tripleo_role_networks': ['ctlplane', 'storage'],
                   'ctlplane_ip': '192.168.24.10',
                   'storage_ip': '172.16.1.10'},
            'n0': {'tripleo_role_networks': ['ctlplane', 'storage'],
                   'ctlplane_ip': '192.168.24.13',
                   'storage_ip': '192.168.24.13'},
        }
        spec = importlib.util.spec_from_file_location('role_filters',
                                                      FILTERS)
        plugin = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plugin)
        targets = plugin.FilterModule().filters()[
            'tripleo_ipsec_probe_targets']
        self.assertEqual(
            [{'network': 'ctlplane', 'address': '192.168.24.13'}],
            targets(hostvars, ['c0', 'n0'], 'c0'))
        self.assertEqual(
            [{'network': 'ctlplane', 'address': '192.168.24.10'}],
            targets(hostvars, ['c0', 'n0'], 'n0'))
