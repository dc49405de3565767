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

"""Topology + Options -> Plan: which conns every host gets.  No I/O.

- Every pair of hosts on a protected network gets one transport-mode conn,
  mirrored on both ends under the same name.  Both ends load it as a trap
  (``auto=ondemand``), so no packet leaves in clear while the SA comes up,
  and exactly one end is the initiator, chosen from a hash of the pair, so
  no two hosts start crossing negotiations and the load spreads evenly.
- Every VIP on a protected network gets, on each peer host of its network, a
  trap conn towards the VIP (``right=<VIP>``), and on each host that may hold
  it (pacemaker nodes), one conn from the VIP to every peer, left for the
  OCF agent to load (``auto=ignore``) when the VIP lands there.
- Keys are not in the plan: render derives them from the master key, the
  network, the pair's addresses and ``key_epoch``.  With ``auth`` cert,
  every conn names both ends' identities (``names.host_cert_id``,
  ``names.vip_cert_id``) and the certificate this end shows: its own on
  the network, or the VIP's on a holder.
- Every exemption (``clear_exemptions``) gets, on each host of each
  protected network it names, passthrough conns from the host's subnet to
  each subnet of the network (``Clear``): no SA, no key, in clear.
- Excluded (blacklisted) hosts stay peers of the others, so their tunnels
  keep working, but get no plan of their own.
"""

import collections
import contextlib
import dataclasses
import functools
import gc
import hashlib
import ipaddress
import operator
import typing

from tripleo_ipsec.errors import Error
from tripleo_ipsec.node import names
from tripleo_ipsec.options import DEFAULT_SKIP_NETWORKS
from tripleo_ipsec.options import exemption
from tripleo_ipsec.options import IKE_PORTS
from tripleo_ipsec import proposals

HOST, VIP_PEER, VIP_HOLDER = 'host', 'vip-peer', 'vip-holder'
MESH, GROUP = 'mesh', 'group'


class Conn(typing.NamedTuple):
    name: str
    kind: str          # HOST, VIP_PEER or VIP_HOLDER
    network: str
    vip: str           # the VIP's name for VIP conns, '' for HOST conns
    left: str          # this end's address (the VIP's, for VIP_HOLDER)
    right: str         # the other end's address (the VIP's, for VIP_PEER)
    peer: str          # the other end's host name ('' for VIP_PEER)
    initiator: bool    # this end starts the negotiation
    auto: str          # 'ondemand' (trap once loaded) or 'ignore'
    # auth cert only ('' with psk): both ends' identities (the DNS names
    # in their certificates) and the NSS nickname of this end's certificate
    left_id: str = ''
    right_id: str = ''
    cert: str = ''


class Clear(typing.NamedTuple):
    """A passthrough conn: one exemption's traffic, between two subnets.

    Pluto installs its policies (no SA, nothing negotiated) with a better
    xfrm priority than every encrypted conn's, since its selectors name a
    protocol (and port).
    """
    name: str
    network: str
    left: str          # this host's address on the network
    left_subnet: str   # the network's subnet holding it (and its VIPs)
    right_subnet: str  # one subnet of the network
    left_proto: str    # libreswan leftprotoport / rightprotoport
    right_proto: str
    exemption: str     # the operator's text, e.g. tcp/22


class Group(typing.NamedTuple):
    """A network's opportunistic group conn on one host (mode group).

    One conn towards every address of the network's subnets (its policy
    group file lists them), an SA per peer negotiated on the pair's first
    packet.  With auth cert it names this end's identity and certificate;
    the other end is any certificate of the trusted CA.
    """
    name: str
    network: str
    left: str          # this host's address on the network
    subnets: tuple     # the network's subnets of that address family
    peers: int         # the other hosts of the network (SAs at most)
    left_id: str = ''
    cert: str = ''


@dataclasses.dataclass(frozen=True)
class HostPlan(object):
    name: str
    role: str
    conns: tuple       # of Conn, sorted by (network, name)
    clear: tuple = ()  # of Clear, sorted by (network, name)
    groups: tuple = ()  # of Group (mode group), sorted by network

    def load(self, compress=False):
        """What this host's pluto and kernel carry, at most.

        Every conn has one IKE SA and one Child SA when it is up (a VIP's
        holder conns only while this host holds the VIP: counted as if it
        held them all); a group conn, one per peer of its network, each
        only once the pair has talked (``on_demand``); a Child SA is two
        kernel xfrm states, four with IPComp.  Passthrough conns
        (``clear``) have no SA.
        """
        on_demand = sum(g.peers for g in self.groups)
        sas = len(self.conns) + on_demand
        return {'conns': len(self.conns) + len(self.groups) + len(self.clear),
                'clear': len(self.clear), 'ike_sas': sas, 'child_sas': sas,
                'on_demand': on_demand,
                'xfrm_states': sas * (4 if compress else 2)}


@dataclasses.dataclass(frozen=True)
class VipPlan(object):
    name: str
    network: str
    address: str
    holders: tuple     # hosts that may hold it
    peers: tuple       # every other host of its network
    resource: dict     # the pacemaker resource that owns its IPsec side


@dataclasses.dataclass(frozen=True)
class Plan(object):
    networks: tuple            # protected networks
    hosts: dict                # host name -> HostPlan (excluded hosts: none)
    vips: tuple                # of VipPlan
    firewall_rules: dict       # tripleo_firewall rules, by rule name
    options: object            # the Options the plan was made with
    mtu: dict = dataclasses.field(default_factory=dict)  # mtus()
    mode: str = MESH           # MESH or GROUP, as choose_mode() decided
    mode_reason: str = ''
    # each protected network's hosts, ((name, address), ...): render's
    # pairs, and in mode group every host's key lines
    members: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def load(self):
        """{host: HostPlan.load()}, worked out once."""
        return {name: host.load(self.options.compress)
                for name, host in self.hosts.items()}

    def over_budget(self):
        """One line per host whose SAs exceed ``options.conn_budget``.

        Mesh only: in mode group a restarted pluto negotiates only the
        pairs that talk, when they talk.
        """
        budget = self.options.conn_budget
        if not budget or self.mode == GROUP:
            return []
        return ['%s: %d SAs at most (%d conns), over the conn budget of %d '
                'per node (IpsecConnBudget): every one is negotiated again '
                'when its pluto restarts' % (name, load['child_sas'],
                                             load['conns'], budget)
                for name, load in sorted(self.load.items())
                if load['child_sas'] > budget]

    def to_dict(self):
        hosts = {}
        loads = self.load
        for name, host in sorted(self.hosts.items()):
            hosts[name] = {'role': host.role,
                           'conns': [c._asdict() for c in host.conns],
                           'clear': [c._asdict() for c in host.clear],
                           'groups': [g._asdict() for g in host.groups],
                           'load': loads[name]}
        counts = [len(h.conns) + len(h.groups)
                  for h in self.hosts.values()] or [0]
        sas = [v['child_sas'] for v in loads.values()] or [0]
        return {
            'networks': list(self.networks),
            'hosts': hosts,
            'vips': [dataclasses.asdict(v) for v in self.vips],
            'firewall_rules': self.firewall_rules,
            'mtu': self.mtu,
            'mode': self.mode,
            'mode_reason': self.mode_reason,
            'options': self.options.to_dict(),
            'summary': {'hosts': len(self.hosts),
                        'mode': self.mode,
                        'conns': sum(counts),
                        'max_conns_per_host': max(counts),
                        'max_sas_per_host': max(sas),
                        'over_budget': self.over_budget()},
        }


def initiator(network, address_a, address_b):
    """The address that initiates for this pair: stable, evenly spread."""
    # sorted as text (written out: 1.2 million pairs at 500 nodes)
    low, high = ((address_a, address_b) if address_a <= address_b
                 else (address_b, address_a))
    digest = hashlib.sha256(('%s|%s|%s' % (network, low, high)).encode())
    return low if digest.digest()[0] & 1 == 0 else high


def _family(address):
    return 6 if ':' in address else 4


def protected_networks(topology, options):
    # The default names are TripleO's stock networks; a deployment without
    # one of them is fine.  Any other name must be a network of this one.
    unknown = sorted(set(options.skip_networks) - set(topology.networks) -
                     set(DEFAULT_SKIP_NETWORKS))
    if unknown:
        raise Error('skip_networks: %s %s not a network of this deployment '
                    '(networks: %s)'
                    % (', '.join(unknown), 'is' if len(unknown) == 1
                       else 'are', ', '.join(topology.networks)))
    return tuple(n for n in topology.networks
                 if n not in options.skip_networks)


def firewall_rules(cidrs_by_network, skip_networks):
    """The ``tripleo_firewall`` rules the Heat service deploys.

    ``cidrs_by_network`` is ``Topology.cidrs``: THT's ``net_cidr_map``,
    checked and normalised (network -> tuple of CIDR texts).  IKE (UDP 500,
    4500) and ESP from each subnet of every network of it (all the subnets
    of a routed network) but the skipped
    ones: one rule per network and CIDR, since a rule takes one source.
    The service template computes the same rules from the same two inputs
    in Heat (tests/test_heat.py holds them equal); Heat knows no hosts, so
    a network no host is on gets rules too.  No CIDR, no rule: none is open
    to any source.
    """
    rules = {}
    for net, cidrs in sorted(cidrs_by_network.items()):
        if net in skip_networks:
            continue
        for cidr in cidrs:
            common = {'source': cidr,
                      'ipversion': 'ipv%d' % _family(cidr)}
            scope = '%s %s' % (net, cidr)
            rules[names.firewall_rule(100, 'ike', scope)] = dict(
                common, proto='udp', dport=list(IKE_PORTS))
            rules[names.firewall_rule(101, 'esp', scope)] = dict(
                common, proto='esp')
    return rules


def _protoports(proto, port, family):
    """[(leftprotoport, rightprotoport)] that exempt PROTO[/PORT] both ways.

    A port is either end's: this host as the client (the peer's port) and
    as the server (its own), two conns.
    """
    if proto == 'icmp':
        name = 'icmp' if family == 4 else 'ipv6-icmp'
        return [('to', name, name)]
    if not port:
        return [('to', proto, proto)]
    return [('to', proto, '%s/%d' % (proto, port)),
            ('from', '%s/%d' % (proto, port), proto)]


def clear_conns(networks, topology, options):
    """{host: [Clear]}: the exemptions, per host and protected network."""
    wanted = [exemption(t) + (t,) for t in options.clear_exemptions]
    unknown = sorted({net for _, _, net, _ in wanted
                      if net and net not in networks})
    if unknown:
        raise Error('clear_exemptions: %s %s not a protected network '
                    '(protected: %s)' % (', '.join(unknown), 'is' if
                                         len(unknown) == 1 else 'are',
                                         ', '.join(networks)))
    clear = {}
    for host in topology.hosts:
        if host.excluded:
            continue
        mine = clear.setdefault(host.name, [])
        for net in networks:
            address = host.addresses.get(net)
            if not address:
                continue
            family = _family(address)
            subnets = [c for c in topology.cidrs.get(net, ())
                       if _family(c) == family]
            own = [c for c in subnets
                   if ipaddress.ip_address(address) in
                   ipaddress.ip_network(c)]
            if not subnets and any(not only or only == net
                                   for _, _, only, _ in wanted):
                raise Error('clear_exemptions: network %s has no IPv%d '
                            'subnet in net_cidr_map, and an exemption '
                            'needs the subnets it applies to' % (net, family))
            left_subnet = own[0] if own else '%s/%d' % (
                address, 32 if family == 4 else 128)
            for proto, port, only, text in wanted:
                if only and only != net:
                    continue
                for index, subnet in enumerate(subnets):
                    for way, left, right in _protoports(proto, port, family):
                        mine.append(Clear(
                            names.clear_conn(net, proto, port, way, index),
                            net, address, left_subnet, subnet, left, right,
                            text))
    return clear


def mtus(networks, topology, options):
    """What ESP leaves of each protected network's MTU, per address family.

    {network: {'link': MTU or None, 'ipv4'/'ipv6': {'inner': the largest
    IP packet that crosses inside ESP, 'ping': the largest ICMP echo
    payload (``ping -M do -s``)}}}, for the families the network's hosts
    use, with the ESP proposal's worst case and the encapsulation
    (``yes``: 8 bytes of UDP).  Raises Error when an inner MTU is below
    ``options.mtu_floor``.  A network whose link MTU the deployment does
    not give is left unchecked (``link`` None).
    """
    udp = options.encapsulation == 'yes'
    result = {}
    for net in networks:
        link = topology.mtus.get(net)
        entry = result.setdefault(net, {'link': link})
        families = sorted({_family(h.addresses[net])
                           for h in topology.members(net)})
        for family in families if link else ():
            inner = proposals.inner_mtu(options.esp, link, family, udp)
            entry['ipv%d' % family] = {
                'inner': inner,
                'ping': inner - proposals.IP_HEADER[family] - 8}
            if inner < options.mtu_floor:
                raise Error(
                    'network %s: ESP (%s%s) leaves IPv%d packets %d bytes '
                    'of its MTU %d, below the floor of %d (IpsecMtuFloor): '
                    'raise the network\'s mtu in network_data' % (
                        net, options.esp, ', in UDP' if udp else '', family,
                        inner, link, options.mtu_floor))
    return result


def with_cert(conn, host, domain):
    """CONN of HOST with the identities and certificate auth cert uses."""
    mine = names.host_cert_id(host, conn.network, domain)
    if isinstance(conn, Group):
        return conn._replace(left_id=mine, cert=names.host_cert(conn.network))
    if conn.kind == HOST:
        return conn._replace(left_id=mine, right_id=names.host_cert_id(
            conn.peer, conn.network, domain),
            cert=names.host_cert(conn.network))
    vip = names.vip_cert_id(conn.vip, conn.network, domain)
    if conn.kind == VIP_PEER:
        return conn._replace(left_id=mine, right_id=vip,
                             cert=names.host_cert(conn.network))
    return conn._replace(left_id=vip, right_id=names.host_cert_id(
        conn.peer, conn.network, domain), cert=names.vip_cert(conn.vip))


def choose_mode(options, mesh_sas, no_subnets=()):
    """(MESH or GROUP, why): the operator's choice, or auto's.

    ``mesh_sas`` is {host: the SAs it would carry in a mesh}.  auto would
    pick group once a host's mesh exceeds ``options.conn_budget`` (the
    point where a restarted pluto takes too long to negotiate them all
    again, bench/establish.py, and a mesh's conns weigh on pluto) unless a
    protected network has no subnet in net_cidr_map (``no_subnets``), which
    a group conn covers.
    """
    if options.mode in (MESH, GROUP):
        return options.mode, 'IpsecMode %s' % options.mode
    worst = max(sorted(mesh_sas.items()), key=lambda kv: kv[1],
                default=('', 0))
    budget = options.conn_budget
    if budget and worst[1] > budget:
        why = ('auto: %s would carry %d SAs in a mesh, over the conn budget '
               'of %d' % (worst[0], worst[1], budget))
        if no_subnets:
            return MESH, why + (', but network %s has no subnet in '
                                'net_cidr_map for a group conn'
                                % ', '.join(no_subnets))
        return GROUP, why
    return MESH, ('auto: at most %d SAs per node in a mesh%s' % (
        worst[1], ', within the conn budget of %d' % budget if budget
        else ' (conn budget 0: always mesh)'))


def group_subnets(cidrs, vips):
    """What a group conn covers: the subnets CIDRS less the addresses VIPS.

    A VIP has its own conns (a peer's towards it, the holder's from it);
    left in the group, a peer's packet to it, or the VIP's next holder's
    IKE to a node where it still is, met the group's trap or instance and
    aborted pluto 4.10 in the lab (two interfaces matched).  Returns the
    prefixes, sorted, that cover the rest.
    """
    left = [ipaddress.ip_network(c) for c in cidrs]
    for vip in vips:
        vip = ipaddress.ip_network(vip)
        rest = []
        for net in left:
            if net.version == vip.version and vip.subnet_of(net):
                rest.extend(net.address_exclude(vip))
            else:
                rest.append(net)
        left = rest
    return tuple(str(n) for n in sorted(left, key=lambda n: (
        n.version, n.network_address, n.prefixlen)))


def _groups(networks, topology, members):
    """{host: [Group]}: one per protected network the host is on."""
    groups = {}
    for net in networks:
        vips = [v.address for v in topology.vips if v.network == net]
        # per address family, once per network: its hosts, and what the
        # network's group covers
        count = collections.Counter(_family(h.addresses[net])
                                    for h in members[net])
        covered = {family: group_subnets(
            [c for c in topology.cidrs.get(net, ()) if _family(c) == family],
            vips) for family in count}
        for host in members[net]:
            if host.excluded:
                continue
            address = host.addresses[net]
            family = _family(address)
            groups.setdefault(host.name, []).append(Group(
                names.group_conn(net), net, address, covered[family],
                count[family] - 1))
    missing = sorted({g.network for gs in groups.values() for g in gs
                      if not g.subnets})
    if missing:
        raise Error('mode group: network %s has no subnet of its hosts\' '
                    'address family in net_cidr_map, and its group conn '
                    'covers the network\'s subnets' % ', '.join(missing))
    return groups


@contextlib.contextmanager
def _no_gc():
    """Python's cyclic garbage collector off, as it was after.

    A large mesh is millions of small tuples and no cycles: the collector
    scanned them again and again, and took half of the plan's time at 500
    nodes (bench/scale.py).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build(topology, options):
    """Topology + Options -> Plan."""
    with _no_gc():
        return _build(topology, options)


def _build(topology, options):
    networks = protected_networks(topology, options)
    conns = {h.name: [] for h in topology.hosts if not h.excluded}
    members = {net: topology.members(net) for net in networks}
    # a mesh's host-to-host SAs per host, for auto
    mesh_sas = {name: 0 for name in conns}

    for net in networks:
        for a in members[net]:
            if a.name in conns:
                family = _family(a.addresses[net])
                mesh_sas[a.name] += len([
                    b for b in members[net] if b is not a and
                    _family(b.addresses[net]) == family])

    vips = []
    for vip in topology.vips:
        if vip.network not in networks:
            continue
        vip_members = [h for h in members[vip.network]
                       if _family(h.addresses[vip.network]) ==
                       _family(vip.address)]
        holders = tuple(h.name for h in vip_members if h.vip_holder)
        if not holders:
            raise Error('VIP %s (%s) is on protected network %s but no host '
                        'of that network runs pacemaker to hold it'
                        % (vip.name, vip.address, vip.network))
        if len(vip_members) < 2:
            # one node on the VIP's network (a one-controller cloud): no
            # peer sends to the VIP over the wire, so it gets no conns and
            # no resource (an agent with no holder conn could not start)
            continue
        for peer in vip_members:
            if peer.name not in conns:
                continue
            conns[peer.name].append(Conn(
                names.vip_conn(vip.name, peer.name), VIP_PEER, vip.network,
                vip.name, peer.addresses[vip.network], vip.address, '',
                False, 'ondemand'))
        for holder in vip_members:
            if not holder.vip_holder or holder.name not in conns:
                continue
            for peer in vip_members:
                if peer.name == holder.name:
                    continue
                conns[holder.name].append(Conn(
                    names.vip_conn(vip.name, peer.name), VIP_HOLDER,
                    vip.network, vip.name, vip.address,
                    peer.addresses[vip.network], peer.name, True, 'ignore'))
        ip_resource = names.vip_ip_resource(vip.address)
        vips.append(VipPlan(
            name=vip.name, network=vip.network, address=vip.address,
            holders=holders,
            peers=tuple(h.name for h in vip_members),
            resource={'id': names.vip_ipsec_resource(vip.name),
                      'agent': names.ocf_agent(),
                      'params': {'vip': vip.address, 'vip_name': vip.name},
                      'colocated_with': ip_resource,
                      'started_after': ip_resource}))

    mode, reason = choose_mode(options, {
        name: sas + len(conns[name]) for name, sas in mesh_sas.items()},
        [net for net in networks if not topology.cidrs.get(net)])
    groups = {}
    if mode == GROUP:
        # a VIP keeps its own conns (their failover is the agent's); each
        # network's hosts reach each other through its group conn
        groups = _groups(networks, topology, members)
    else:
        for net in networks:
            _mesh(net, members[net], conns)

    if options.auth == 'cert':
        conns = {name: [with_cert(c, name, options.cert_domain)
                        for c in host_conns]
                 for name, host_conns in conns.items()}
        groups = {name: [with_cert(g, name, options.cert_domain)
                         for g in host_groups]
                  for name, host_groups in groups.items()}
    clear = clear_conns(networks, topology, options)
    hosts = {}
    for host in topology.hosts:
        if host.name in conns:
            hosts[host.name] = HostPlan(
                host.name, host.role,
                tuple(sorted(conns[host.name],
                             key=operator.attrgetter('network', 'name',
                                                     'kind'))),
                tuple(sorted(clear[host.name],
                             key=lambda c: (c.network, c.name))),
                tuple(sorted(groups.get(host.name, ()),
                             key=lambda g: g.network)))
    return Plan(networks=networks, hosts=hosts, vips=tuple(vips),
                firewall_rules=firewall_rules(topology.cidrs,
                                              options.skip_networks),
                options=options, mtu=mtus(networks, topology, options),
                mode=mode, mode_reason=reason,
                members={net: tuple((h.name, h.addresses[net])
                                    for h in members[net])
                         for net in networks})


def _mesh(net, members, conns):
    """Every pair of MEMBERS on NET: one conn, on both ends (CONNS)."""
    # each member's address, family and conn list (None: excluded) once
    ends = [(h.name, h.addresses[net], _family(h.addresses[net]),
             conns.get(h.name)) for h in members]
    for i, (name_a, addr_a, family_a, mine_a) in enumerate(ends):
        for name_b, addr_b, family_b, mine_b in ends[i + 1:]:
            if family_a != family_b:
                continue
            name = names.host_conn(net, name_a, name_b)
            first = initiator(net, addr_a, addr_b)
            if mine_a is not None:
                mine_a.append(Conn(
                    name, HOST, net, '', addr_a, addr_b, name_b,
                    first == addr_a, 'ondemand'))
            if mine_b is not None:
                mine_b.append(Conn(
                    name, HOST, net, '', addr_b, addr_a, name_a,
                    first == addr_b, 'ondemand'))
