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

"""Stack outputs -> Topology, through tripleo-common's TripleoInventory."""

import copy
import os

from tests import base
from tripleo_ipsec.errors import Error
from tripleo_ipsec import sources
from tripleo_ipsec import topology
from tripleo_ipsec_lab import synth


def stock():
    return synth.stack_outputs([synth.controller(3), synth.compute(2)])


class TestInventory(base.TestCase):

    def test_tripleo_common_inventory(self):
        inv = sources.inventory(stock())
        hostvars = inv['_meta']['hostvars']
        self.assertEqual('172.16.2.10',
                         hostvars['overcloud-controller-0']['internal_api_ip'])
        self.assertEqual(['Compute', 'Controller'],
                         sorted(inv['ipsec']['children']))
        self.assertEqual(['Controller'], inv['pacemaker']['children'])
        self.assertEqual('172.16.2.4', inv['overcloud']['vars']['redis_vip'])
        # ansible-core 2.19 wants a list here; tripleo-common gives a dict
        self.assertEqual([], inv['excluded_overcloud']['hosts'])

    def test_excluded_hosts_listed(self):
        outputs = stock()
        outputs['BlacklistedHostnames'] = ['overcloud-novacompute-1']
        inv = sources.inventory(outputs)
        self.assertEqual(['overcloud-novacompute-1'],
                         inv['excluded_overcloud']['hosts'])
        topo = sources.topology_of(outputs)
        self.assertEqual(['overcloud-novacompute-1'],
                         [h.name for h in topo.hosts if h.excluded])

    def test_role_without_server_ids_does_not_crash(self):
        outputs = stock()
        del outputs['ServerIdData']['server_ids']['Compute']
        topo = sources.topology_of(outputs)
        self.assertEqual(5, len(topo.hosts))


class TestTopology(base.TestCase):

    def test_roles_addresses_and_holders(self):
        topo = sources.topology_of(stock())
        hosts = {h.name: h for h in topo.hosts}
        self.assertEqual('Compute', hosts['overcloud-novacompute-0'].role)
        self.assertNotIn('storage_mgmt',
                         hosts['overcloud-novacompute-0'].addresses)
        self.assertTrue(hosts['overcloud-controller-2'].vip_holder)
        self.assertFalse(hosts['overcloud-novacompute-0'].vip_holder)
        self.assertEqual(('ctlplane', 'external', 'internal_api', 'storage',
                          'storage_mgmt', 'tenant'), topo.networks)

    def test_noop_port_means_not_on_the_network(self):
        # Older THT hands out the ctlplane address for networks a role is
        # not attached to.
        outputs = stock()
        ips = outputs['RoleNetIpMap']['Compute']
        ips['storage_mgmt'] = list(ips['ctlplane'])
        topo = sources.topology_of(outputs)
        compute = [h for h in topo.hosts if h.role == 'Compute'][0]
        self.assertNotIn('storage_mgmt', compute.addresses)

    def test_ipv6_addresses_are_normalised(self):
        outputs = synth.stack_outputs([synth.controller(1)],
                                      synth.IPV6_NETWORKS)
        addr = outputs['RoleNetIpMap']['Controller']['internal_api'][0]
        outputs['RoleNetIpMap']['Controller']['internal_api'][0] = \
            addr.replace('fd00:fd00:fd00:2000::', 'FD00:FD00:FD00:2000:0::')
        topo = sources.topology_of(outputs)
        self.assertEqual(addr, topo.hosts[0].addresses['internal_api'])

    def test_vip_of_a_network_no_host_is_on_is_left_out(self):
        outputs = synth.stack_outputs([synth.compute(2)])
        topo = sources.topology_of(outputs)
        self.assertNotIn('external', {v.name for v in topo.vips})

    def test_service_vip_outside_every_subnet(self):
        outputs = stock()
        outputs['VipMap']['redis'] = '192.0.2.7'
        self.assertRaises(Error, sources.topology_of, outputs,
                          synth.net_cidr_map())

    def test_address_outside_its_subnet(self):
        outputs = stock()
        outputs['RoleNetIpMap']['Compute']['storage'][0] = '172.16.9.9'
        exc = self.assertRaises(Error, sources.topology_of, outputs,
                                synth.net_cidr_map())
        self.assertIn('172.16.9.9', str(exc))

    def test_vip_clashing_with_a_host(self):
        outputs = stock()
        outputs['VipMap']['internal_api'] = outputs['RoleNetIpMap'][
            'Compute']['internal_api'][0]
        exc = self.assertRaises(Error, sources.topology_of, outputs)
        self.assertIn('duplicate address', str(exc))

    def test_bad_names_are_refused(self):
        outputs = stock()
        bad = copy.deepcopy(outputs)
        bad['RoleNetIpMap']['Compute']['../etc'] = ['1.2.3.4', '1.2.3.5']
        self.assertRaises(Error, sources.topology_of, bad)
        bad = copy.deepcopy(outputs)
        names = bad['RoleNetHostnameMap']['Compute']['ctlplane']
        names[0] = '../evil.ctlplane.localdomain'
        self.assertRaises(Error, sources.topology_of, bad)

    def test_mismatched_counts_are_refused(self):
        outputs = stock()
        outputs['RoleNetIpMap']['Compute']['storage'].pop()
        exc = self.assertRaises(Error, sources.topology_of, outputs)
        self.assertIn('RoleNetIpMap.Compute.storage', str(exc))


class TestShapes(base.TestCase):

    def test_every_shape_gives_the_same_outputs(self):
        outputs = stock()
        heat = synth.as_heat_list(outputs)
        for shape in (heat, {'outputs': heat}, outputs,
                      synth.as_output_show_all(outputs)):
            self.assertEqual(outputs, sources.parse_outputs(shape))


class TestFromInventory(base.TestCase):
    """config-download's saved inventory gives the same topology."""

    def _static_inventory(self, outputs):
        path = os.path.join(self.tempdir(), 'tripleo-ansible-inventory.yaml')
        with sources.quiet():
            sources.tripleo_inventory(outputs).write_static_inventory(path)
        return path

    def test_static_inventory_plus_net_vip_map(self):
        outputs = stock()
        outputs['BlacklistedHostnames'] = ['overcloud-novacompute-1']
        path = self._static_inventory(outputs)
        want = sources.topology_of(outputs, synth.net_cidr_map())
        got = topology.build(sources.load_inventory(path),
                             outputs['VipMap'], synth.net_cidr_map())
        self.assertEqual(want, got)

    def test_without_net_vip_map_ovn_dbs_is_missing(self):
        # tripleo-common keeps redis_vip but drops ovn_dbs: why the Heat
        # service passes config-download's net_vip_map along
        outputs = stock()
        got = topology.build(sources.load_inventory(
            self._static_inventory(outputs)))
        names = {v.name for v in got.vips}
        self.assertIn('redis', names)
        self.assertNotIn('ovn_dbs', names)
