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

"""Synthesise overcloud stack outputs the way tripleo-heat-templates does.

The lab, the benchmarks and the test fixtures need stack outputs for
overclouds that do not exist.  This builds them in the shapes THT's
``overcloud.j2.yaml`` gives: ``RoleNetHostnameMap``, ``RoleNetIpMap``,
``ServerIdData``, ``VipMap`` (network VIPs plus ``redis`` and ``ovn_dbs``),
``EnabledServices`` and ``BlacklistedHostnames``, and the ``net_cidr_map``
THT hands services in ``ServiceData``.
"""

import dataclasses
import ipaddress
import uuid

# name -> subnets (a routed, spine-leaf network has several)
DEFAULT_NETWORKS = {
    'ctlplane': ('192.168.24.0/24',),
    'external': ('10.0.0.0/24',),
    'internal_api': ('172.16.2.0/24',),
    'storage': ('172.16.1.0/24',),
    'storage_mgmt': ('172.16.3.0/24',),
    'tenant': ('172.16.0.0/24',),
}
IPV6_NETWORKS = {
    'ctlplane': ('192.168.24.0/24',),
    'external': ('2001:db8:fd00:1000::/64',),
    'internal_api': ('fd00:fd00:fd00:2000::/64',),
    'storage': ('fd00:fd00:fd00:3000::/64',),
    'storage_mgmt': ('fd00:fd00:fd00:4000::/64',),
    'tenant': ('172.16.0.0/24',),
}
# networks THT gives a VIP (network_data.yaml vip: true)
VIP_NETWORKS = ('ctlplane', 'external', 'internal_api', 'storage',
                'storage_mgmt')
CONTROLLER_SERVICES = ('ca_certs', 'haproxy', 'ipsec', 'keystone', 'mysql',
                       'ovn_dbs', 'pacemaker', 'rabbitmq', 'redis')
COMPUTE_SERVICES = ('ca_certs', 'ipsec', 'nova_compute', 'ovn_controller')
STORAGE_SERVICES = ('ca_certs', 'ceph_osd', 'ipsec')


@dataclasses.dataclass
class Role(object):
    name: str
    count: int
    networks: tuple
    services: tuple
    hostname_format: str
    subnet: int = 0      # which subnet of each routed network (leaf index)


def controller(count=3):
    return Role('Controller', count,
                ('ctlplane', 'external', 'internal_api', 'storage',
                 'storage_mgmt', 'tenant'),
                CONTROLLER_SERVICES, '%stackname%-controller-%index%')


def compute(count=2, name='Compute', subnet=0,
            hostname_format='%stackname%-novacompute-%index%'):
    return Role(name, count, ('ctlplane', 'internal_api', 'storage', 'tenant'),
                COMPUTE_SERVICES, hostname_format, subnet)


def ceph(count=1):
    return Role('CephStorage', count, ('ctlplane', 'storage', 'storage_mgmt'),
                STORAGE_SERVICES, '%stackname%-cephstorage-%index%')


class _Allocator(object):
    """Hands out addresses from each subnet: VIPs low, hosts from .10 up."""

    def __init__(self, networks):
        self.subnets = {n: [ipaddress.ip_network(c) for c in cidrs]
                        for n, cidrs in networks.items()}
        self.next = {}

    def host(self, network, subnet):
        net = self.subnets[network][min(subnet,
                                        len(self.subnets[network]) - 1)]
        offset = self.next.get(net, 10)
        self.next[net] = offset + 1
        if offset >= net.num_addresses - 1:
            raise ValueError('subnet %s is full' % net)
        return str(net.network_address + offset)

    def vip(self, network, offset):
        return str(self.subnets[network][0].network_address + offset)


def stack_outputs(roles, networks=None, stack='overcloud', blacklist=(),
                  service_vips=True, vip_networks=VIP_NETWORKS):
    """The stack outputs of an overcloud (a plain key -> value mapping)."""
    networks = dict(networks or DEFAULT_NETWORKS)
    alloc = _Allocator(networks)
    hostnames, ips, server_ids, services = {}, {}, {}, {}
    for role in roles:
        names = [role.hostname_format.replace('%stackname%', stack)
                 .replace('%index%', str(i)) for i in range(role.count)]
        hostnames[role.name] = {
            net: ['%s.%s.localdomain' % (n, net) for n in names]
            for net in role.networks}
        ips[role.name] = {
            net: [alloc.host(net, role.subnet) for _ in names]
            for net in role.networks}
        server_ids[role.name] = [str(uuid.uuid5(uuid.NAMESPACE_DNS, n))
                                 for n in names]
        services[role.name] = list(role.services)
    vips = {net: alloc.vip(net, 5) for net in networks
            if net in vip_networks}
    if service_vips and 'internal_api' in networks:
        vips['redis'] = alloc.vip('internal_api', 4)
        vips['ovn_dbs'] = alloc.vip('internal_api', 6)
    first = next((ids[0] for ids in server_ids.values() if ids), None)
    return {
        'RoleNetHostnameMap': hostnames,
        'RoleNetIpMap': ips,
        'ServerIdData': {'server_ids': server_ids,
                         'bootstrap_server_id': first},
        'VipMap': vips,
        'EnabledServices': services,
        'BlacklistedHostnames': list(blacklist),
        'KeystoneURL': 'http://%s:5000' % vips.get('external', '127.0.0.1'),
    }


def net_cidr_map(networks=None):
    """ServiceData.net_cidr_map as THT gives it: network -> [CIDR, ...]."""
    return {n: list(c) for n, c in (networks or DEFAULT_NETWORKS).items()}


def as_heat_list(outputs):
    """Heat's own shape: a list of {output_key, output_value}."""
    return [{'output_key': k, 'output_value': v,
             'description': 'synthesised'} for k, v in outputs.items()]


def as_output_show_all(outputs):
    """``openstack stack output show --all -f json``'s shape."""
    return {k: {'output_value': v, 'description': 'synthesised'}
            for k, v in outputs.items()}
