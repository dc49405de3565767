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

"""Inventory -> Topology: who is on which network, with which address.

Pure: it takes the inventory tripleo-common builds (``sources`` reads it
from stack outputs, a live stack or a saved file), THT's VipMap and
net_cidr_map, and returns one ``Topology``.  Inputs that would make a broken
mesh are refused here with one clear line.
"""

import dataclasses
import functools
import ipaddress
import logging

from tripleo_ipsec.errors import Error
from tripleo_ipsec.node import names

LOG = logging.getLogger(__name__)

HOST_NETWORK = 'ctlplane'
PACEMAKER_GROUP = 'pacemaker'
# VIPs that THT names after a service, not after their network
SERVICE_VIPS = ('redis', 'ovn_dbs')


@dataclasses.dataclass(frozen=True)
class Host(object):
    name: str
    role: str
    addresses: dict          # network -> address (normalised text)
    vip_holder: bool = False  # may hold VIPs (in the pacemaker group)
    excluded: bool = False    # blacklisted: neither configured nor keyed


@dataclasses.dataclass(frozen=True)
class Vip(object):
    name: str                # 'internal_api', 'redis', 'ovn_dbs', ...
    network: str
    address: str


@dataclasses.dataclass(frozen=True)
class Topology(object):
    hosts: tuple             # of Host, sorted by name
    networks: tuple          # every network any host is on, sorted
    vips: tuple              # of Vip, sorted by name
    cidrs: dict              # network -> tuple of CIDRs (may be empty)
    mtus: dict = dataclasses.field(default_factory=dict)  # network -> MTU

    def members(self, network):
        """Hosts with an address on ``network``, sorted by name."""
        return [h for h in self.hosts if network in h.addresses]

    def to_dict(self):
        return dataclasses.asdict(self)


# -- the topology ----------------------------------------------------------

def _ip(text, what, kind):
    """One address or CIDR, canonical, or one line saying what is wrong.

    Only the plain forms: a zone id (``%eth0``) or an IPv4-mapped IPv6
    address would reach ipsec.conf as given, or leave the pair
    unprotected; both are refused, as is anything but ASCII text.
    """
    parse = ipaddress.ip_address if kind == 'address' else functools.partial(
        ipaddress.ip_network, strict=False)
    if not isinstance(text, str) or not text.isascii() or '%' in text:
        raise Error('%s: %r is not an IP %s (zone ids and non-ASCII text '
                    'are refused)' % (what, text, kind))
    try:
        value = parse(text.strip())
    except ValueError:
        raise Error('%s: %r is not an IP %s' % (what, text, kind))
    mapped = value if kind == 'address' else value.network_address
    if mapped.version == 6 and mapped.ipv4_mapped is not None:
        raise Error('%s: %r is an IPv4-mapped IPv6 %s; give the IPv4 one'
                    % (what, text, kind))
    return value


def _address(text, what):
    return _ip(text, what, 'address')


def _cidrs(net_cidr_map):
    cidrs = {}
    for net, values in (net_cidr_map or {}).items():
        if not names.valid_network(net):
            raise Error('net_cidr_map: %r is not a valid network name'
                        % (net,))
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise Error('net_cidr_map.%s: expected a CIDR or a list of them'
                        % net)
        cidrs[net] = [_ip(value, 'net_cidr_map.%s' % net, 'CIDR')
                      for value in values]
    return cidrs


def _inventory_vips(inv):
    """VIPs an inventory carries as group vars: <name>_vip."""
    vips = {}
    for group, body in inv.items():
        group_vars = body.get('vars', {}) if isinstance(body, dict) else {}
        for key, value in group_vars.items():
            if key.endswith('_vip') and isinstance(value, str) and value:
                vips.setdefault(key[:-len('_vip')], value)
    return vips


def _vip_network(name, address, members, cidrs, vip_networks):
    """Which network carries a service VIP (redis, ovn_dbs, ...)."""
    if name in vip_networks:
        net = vip_networks[name]
        if net not in members:
            raise Error('vip_networks: VIP %s is mapped to %s, which is not '
                        'a network of the deployment' % (name, net))
        return net
    known = [n for n in members if n in cidrs]
    if known:
        holding = [n for n in known if any(address in s for s in cidrs[n])]
    else:
        # No subnet data: the network whose member addresses share the
        # longest prefix with the VIP (TripleO networks are disjoint subnets).
        holding, best = [], -1
        for net, addrs in sorted(members.items()):
            for addr in addrs:
                if addr.version != address.version:
                    continue
                length = addr.max_prefixlen - (
                    int(addr) ^ int(address)).bit_length()
                if length > best:
                    holding, best = [net], length
                elif length == best and net not in holding:
                    holding.append(net)
    if len(holding) == 1:
        return holding[0]
    raise Error('cannot tell which network carries VIP %s (%s); set '
                'vip_networks, e.g. %s:internal_api' % (name, address, name))


def host_addresses(hostvars, networks):
    """A host's address on each of ``networks`` it is on, as text.

    From the variables tripleo-common's inventory gives the host
    (``<network>_ip``).  THT's noop ports hand out the ctlplane address for
    the networks a role is not attached to: the host is not on those.
    """
    ctlplane = hostvars.get(HOST_NETWORK + '_ip')
    found = {}
    for net in networks:
        text = hostvars.get(net + '_ip')
        if text and (net == HOST_NETWORK or text != ctlplane):
            found[net] = text
    return found


MTU_RANGE = (576, 65535)


def _mtu(value, what):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if (not isinstance(value, int) or isinstance(value, bool) or
            not MTU_RANGE[0] <= value <= MTU_RANGE[1]):
        raise Error('%s: %r is not an MTU (%d-%d)'
                    % ((what, value) + MTU_RANGE))
    return value


def _mtus(inv, hostvars, net_mtu_map):
    """network -> link MTU: NET_MTU_MAP, else the inventory's ``<net>_mtu``.

    tripleo-common's inventory gives every role (and host) the MTU of each
    of its networks from network_data; where they differ, the smallest.
    """
    found = {}
    scopes = [('role %s' % g, b.get('vars', {})) for g, b in inv.items()
              if isinstance(b, dict) and isinstance(b.get('vars'), dict)]
    scopes += [('host %s' % h, v) for h, v in hostvars.items()
               if isinstance(v, dict)]
    for scope, variables in scopes:
        for key, value in variables.items():
            net = key[:-len('_mtu')] if key.endswith('_mtu') else None
            if net and names.valid_network(net):
                mtu = _mtu(value, '%s: %s' % (scope, key))
                found[net] = min(found.get(net, mtu), mtu)
    for net, value in (net_mtu_map or {}).items():
        if not names.valid_network(net):
            raise Error('net_mtu_map: %r is not a valid network name'
                        % (net,))
        found[net] = _mtu(value, 'net_mtu_map.%s' % net)
    return found


def build(inv, vip_map=None, net_cidr_map=None, vip_networks=None,
          net_mtu_map=None):
    """A tripleo-common inventory (dynamic form) -> Topology.

    Pure: no file, no Heat, no tripleo-common (``sources`` reads those).

    ``vip_map`` is THT's VipMap (config-download's ``net_vip_map``); VIPs
    the inventory carries as ``<name>_vip`` group vars are taken too.
    ``net_mtu_map`` (network -> MTU) overrides the inventory's MTUs.
    """
    hostvars = inv.get('_meta', {}).get('hostvars', {})
    cidrs = _cidrs(net_cidr_map)
    vip_networks = dict(vip_networks or {})
    holder_roles = set(inv.get(PACEMAKER_GROUP, {}).get('children', []))
    excluded = set(inv.get('excluded_overcloud', {}).get('hosts', []))

    roles = {}
    for group, body in inv.items():
        role_vars = body.get('vars', {}) if isinstance(body, dict) else {}
        if 'tripleo_role_name' in role_vars:
            roles[group] = (role_vars.get('tripleo_role_networks') or [],
                            body.get('hosts') or [])

    hosts, owner, members, role_of = [], {}, {}, {}
    for role in sorted(roles):
        networks, role_hosts = roles[role]
        for name in sorted(role_hosts):
            if not names.valid_host(name):
                raise Error('stack outputs: host name %r is not a valid '
                            'host name' % name)
            if name in role_of:
                raise Error('stack outputs: host %s is in two roles, %s and '
                            '%s' % (name, role_of[name], role))
            role_of[name] = role
            for net in networks:
                if not names.valid_network(net):
                    raise Error('stack outputs: network name %r is not a '
                                'valid network name' % net)
            addresses = {}
            for net, text in host_addresses(hostvars.get(name, {}),
                                            networks).items():
                addr = _address(text, 'host %s, network %s' % (name, net))
                if addr in owner:
                    raise Error('duplicate address %s: host %s (%s) and host '
                                '%s (%s)' % ((addr,) + owner[addr] +
                                             (name, net)))
                owner[addr] = (name, net)
                if net in cidrs and not any(addr in s for s in cidrs[net]):
                    raise Error('host %s: address %s is in no subnet of '
                                'network %s (%s)'
                                % (name, addr, net,
                                   ', '.join(map(str, cidrs[net]))))
                addresses[net] = str(addr)
                members.setdefault(net, []).append(addr)
            hosts.append(Host(name=name, role=role, addresses=addresses,
                              vip_holder=role in holder_roles,
                              excluded=name in excluded))
    if not hosts:
        raise Error('stack outputs: no overcloud hosts found '
                    '(RoleNetHostnameMap lists none)')
    for name in sorted(excluded - {h.name for h in hosts}):
        LOG.warning('excluded host %s is not a host of the stack', name)
    for net in sorted(set(cidrs) - set(members)):
        LOG.info('net_cidr_map names network %s that no host is on', net)

    vips = []
    vip_map = dict(_inventory_vips(inv), **(vip_map or {}))
    unknown = sorted(set(vip_networks) - set(vip_map))
    if unknown:
        raise Error('vip_networks: VIP %s is not in the stack\'s VipMap'
                    % unknown[0])
    for name, text in sorted(vip_map.items()):
        if not text:
            continue
        if not names.valid_network(name):
            raise Error('stack outputs: VIP name %r is not valid' % name)
        addr = _address(text, 'VIP %s' % name)
        if name in vip_networks or name in SERVICE_VIPS:
            net = _vip_network(name, addr, members, cidrs, vip_networks)
        elif name in members:
            net = name
        else:
            LOG.info('VIP %s: no host is on network %s, left out', name, name)
            continue
        if net in cidrs and not any(addr in c for c in cidrs[net]):
            raise Error('VIP %s: address %s is in no subnet of network %s '
                        '(%s)' % (name, addr, net,
                                  ', '.join(map(str, cidrs[net]))))
        if addr in owner:
            raise Error('duplicate address %s: VIP %s and host %s (%s)'
                        % ((addr, name) + owner[addr]))
        owner[addr] = ('VIP', name)
        vips.append(Vip(name=name, network=net, address=str(addr)))

    hosts.sort(key=lambda h: h.name)
    return Topology(hosts=tuple(hosts), networks=tuple(sorted(members)),
                    vips=tuple(vips),
                    cidrs={n: tuple(str(c) for c in v)
                           for n, v in sorted(cidrs.items())},
                    mtus=_mtus(inv, hostvars, net_mtu_map))
