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

"""Plan and render properties over every fixture: the mesh is whole,
mirrored, keyed alike on both ends, and stable when nodes come and go."""

import collections
import dataclasses
import gc
import itertools
import os
import re

import fixtures

from tests import base
from tripleo_ipsec import errors
from tripleo_ipsec import keys
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import plan
from tripleo_ipsec import proposals
from tripleo_ipsec import render
from tripleo_ipsec import sources
from tripleo_ipsec import topology
from tripleo_ipsec_lab import synth

_PSK = re.compile(r'^(\S+) (\S+) : PSK "([^"]+)"$', re.M)
_STANZA = re.compile(r'^conn (\S+)\n((?:\t.*\n)+)', re.M)


def _texts(out, host, suffix):
    """The text of every file of a rendered host's /etc/ipsec.d/*SUFFIX."""
    ipsec_d = os.path.join(out, host, 'etc/ipsec.d')
    for name in sorted(os.listdir(ipsec_d)):
        if name.endswith(suffix):
            with open(os.path.join(ipsec_d, name)) as f:
                yield f.read()


def secrets_of(out, host):
    """{(left, right): psk} from every secrets file of a rendered host."""
    return {(left, right): psk for text in _texts(out, host, '.secrets')
            for left, right, psk in _PSK.findall(text)}


def stanzas_of(out, host):
    """{conn name: stanza text} from every conf file of a rendered host."""
    return {name: body for text in _texts(out, host, '.conf')
            for name, body in _STANZA.findall(text)
            if not name.startswith('tripleo-defaults-')}


class TestMesh(base.TestCase):

    def _check(self, fixture):
        topo = base.fixture_topology(fixture)
        the_plan = base.make_plan(topo)
        out, _ = self.render(the_plan)
        self.assertEqual(('internal_api', 'storage', 'storage_mgmt'),
                         tuple(n for n in the_plan.networks
                               if n != 'storage_nfs'))
        by_host = {h: {c.name: c for c in hp.conns}
                   for h, hp in the_plan.hosts.items()}
        keys = {h: secrets_of(out, h) for h in the_plan.hosts}
        pairs = 0
        for net in the_plan.networks:
            members = topo.members(net)
            for a, b in itertools.combinations(members, 2):
                addr_a, addr_b = a.addresses[net], b.addresses[net]
                if (':' in addr_a) != (':' in addr_b):
                    continue
                pairs += 1
                name = 'tripleo-%s-%s--%s' % ((net,) + tuple(
                    sorted((a.name, b.name))))
                ends = [(h, o) for h, o in ((a, b), (b, a))
                        if h.name in by_host]
                for me, other in ends:
                    conn = by_host[me.name][name]
                    self.assertEqual((me.addresses[net],
                                      other.addresses[net], other.name,
                                      'ondemand', plan.HOST),
                                     (conn.left, conn.right, conn.peer,
                                      conn.auto, conn.kind))
                if len(ends) == 2:
                    ca, cb = by_host[a.name][name], by_host[b.name][name]
                    self.assertNotEqual(ca.initiator, cb.initiator, name)
                    self.assertEqual(keys[a.name][(addr_a, addr_b)],
                                     keys[b.name][(addr_b, addr_a)])
        self.assertGreater(pairs, 0)
        skipped = {'tenant', 'external', 'ctlplane'}
        for host, conns in by_host.items():
            self.assertFalse({c.network for c in conns.values()} & skipped)
            files = os.listdir(os.path.join(out, host, 'etc/ipsec.d'))
            for net in skipped:
                self.assertNotIn('tripleo-%s.conf' % net, files)
            # a host's secrets hold its own pairs and nothing else
            wanted = {(c.left, c.right) for c in conns.values()}
            self.assertEqual(wanted, set(keys[host]))
            stanzas = stanzas_of(out, host)
            self.assertEqual(set(conns), set(stanzas))
        all_keys = [k for h in keys.values() for k in h.values()]
        # each pair's key is its own: as many distinct keys as pairs
        self.assertEqual(len(set(all_keys)),
                         len({frozenset(p) for h in keys.values()
                              for p in h}))
        return topo, the_plan, out

    def test_stock(self):
        topo, the_plan, _ = self._check('stock')
        self.assertEqual(5, len(the_plan.hosts))
        self.assertEqual({'internal_api', 'ovn_dbs', 'redis', 'storage',
                          'storage_mgmt'}, {v.name for v in the_plan.vips})

    def test_composable(self):
        _, the_plan, _ = self._check('composable')
        self.assertIn('storage_nfs', the_plan.networks)

    def test_spine_leaf_subnets_are_peers(self):
        topo, the_plan, _ = self._check('spine_leaf')
        leaf1 = the_plan.hosts['overcloud-compute-leaf1-0']
        peers = {c.peer for c in leaf1.conns
                 if c.network == 'internal_api' and c.kind == plan.HOST}
        self.assertIn('overcloud-compute-leaf2-1', peers)
        self.assertIn('overcloud-controller-0', peers)
        subnets = {h.addresses['internal_api'].rsplit('.', 2)[0]
                   for h in topo.members('internal_api')}
        self.assertEqual(3, len(subnets))

    def test_dual_stack(self):
        topo, the_plan, _ = self._check('dual_stack')
        conns = the_plan.hosts['overcloud-controller-0'].conns
        self.assertTrue(all(':' in c.left for c in conns))
        self.assertTrue(all(':' in v.address for v in the_plan.vips))

    def test_excluded_host_is_peer_but_gets_nothing(self):
        topo, the_plan, out = self._check('excluded')
        self.assertNotIn('overcloud-novacompute-1', the_plan.hosts)
        self.assertFalse(os.path.exists(
            os.path.join(out, 'overcloud-novacompute-1')))
        peers = {c.peer for c in
                 the_plan.hosts['overcloud-novacompute-0'].conns}
        self.assertIn('overcloud-novacompute-1', peers)

    def test_initiators_spread_and_stable(self):
        topo = sources.topology_of(synth.stack_outputs(
            [synth.controller(3), synth.compute(30)]))
        the_plan = base.make_plan(topo)
        for name, hp in the_plan.hosts.items():
            mine = [c.initiator for c in hp.conns if c.kind == plan.HOST]
            share = sum(mine) / len(mine)
            # one initiator per pair, spread: nobody starts all or none
            self.assertTrue(0.2 < share < 0.8, '%s: %.2f' % (name, share))
        count = collections.Counter(
            c.initiator for hp in the_plan.hosts.values() for c in hp.conns
            if c.kind == plan.HOST)
        self.assertEqual(count[True], count[False])
        again = base.make_plan(topo)
        self.assertEqual(the_plan.hosts, again.hosts)


class TestVips(base.TestCase):

    def test_vip_conns(self):
        topo = base.fixture_topology('stock')
        the_plan = base.make_plan(topo)
        holders = {h.name for h in topo.hosts if h.vip_holder}
        self.assertEqual({'overcloud-controller-0', 'overcloud-controller-1',
                          'overcloud-controller-2'}, holders)
        for vip in the_plan.vips:
            members = topo.members(vip.network)
            self.assertEqual(set(vip.holders), holders)
            for host in members:
                conns = the_plan.hosts[host.name].conns
                peer_side = [c for c in conns if c.vip == vip.name and
                             c.kind == plan.VIP_PEER]
                self.assertEqual(1, len(peer_side))
                self.assertEqual((host.addresses[vip.network], vip.address,
                                  'ondemand', False),
                                 (peer_side[0].left, peer_side[0].right,
                                  peer_side[0].auto, peer_side[0].initiator))
                holder_side = {c.peer: c for c in conns if c.vip == vip.name
                               and c.kind == plan.VIP_HOLDER}
                if host.name in holders:
                    self.assertEqual({m.name for m in members} - {host.name},
                                     set(holder_side))
                    for peer, conn in holder_side.items():
                        self.assertEqual(('ignore', True, vip.address),
                                         (conn.auto, conn.initiator,
                                          conn.left))
                        # the holder's end mirrors the peer's end
                        mirror = [c for c in the_plan.hosts[peer].conns
                                  if c.name == conn.name]
                        self.assertEqual([(conn.right, conn.left)],
                                         [(c.left, c.right) for c in mirror])
                else:
                    self.assertEqual({}, holder_side)
            self.assertEqual('ip-%s' % vip.address,
                             vip.resource['colocated_with'])
            self.assertEqual(vip.resource['colocated_with'],
                             vip.resource['started_after'])

    def test_vip_keys_match_on_both_ends(self):
        the_plan = base.make_plan(base.fixture_topology('stock'))
        out, _ = self.render(the_plan)
        compute = secrets_of(out, 'overcloud-novacompute-0')
        holder = secrets_of(out, 'overcloud-controller-1')
        for vip in the_plan.vips:
            if 'overcloud-novacompute-0' not in vip.peers:
                continue
            addr = [c.left for c in the_plan.hosts[
                'overcloud-novacompute-0'].conns if c.vip == vip.name][0]
            self.assertEqual(compute[(addr, vip.address)],
                             holder[(vip.address, addr)])

    def test_service_vips_found_without_cidrs(self):
        for fixture in ('stock', 'composable', 'spine_leaf', 'dual_stack'):
            topo = sources.topology_of(base.fixture_outputs(fixture))
            placed = {v.name: v.network for v in topo.vips}
            self.assertEqual('internal_api', placed['redis'], fixture)
            self.assertEqual('internal_api', placed['ovn_dbs'], fixture)

    def test_vip_networks_option_places_a_vip(self):
        topo = sources.topology_of(base.fixture_outputs('stock'),
                                   vip_networks={'redis': 'storage'})
        self.assertEqual('storage', {v.name: v.network
                                     for v in topo.vips}['redis'])


class TestStableNames(base.TestCase):
    """Scale-out and scale-in only add or remove; nothing else changes."""

    def _render(self, computes, key):
        topo = sources.topology_of(synth.stack_outputs(
            [synth.controller(3), synth.compute(computes)]))
        the_plan = base.make_plan(topo)
        out, _ = self.render(the_plan, key)
        return the_plan, out

    def test_adding_a_compute_only_adds(self):
        key = self.master_key()
        old_plan, old = self._render(2, key)
        new_plan, new = self._render(3, key)
        self.assertEqual(set(old_plan.hosts) | {'overcloud-novacompute-2'},
                         set(new_plan.hosts))
        added = 0
        for host in old_plan.hosts:
            old_stanzas, new_stanzas = stanzas_of(old, host), stanzas_of(
                new, host)
            old_keys, new_keys = secrets_of(old, host), secrets_of(new, host)
            # every existing conn and key is still there, unchanged
            for name, text in old_stanzas.items():
                self.assertEqual(text, new_stanzas[name], name)
            for pair, psk in old_keys.items():
                self.assertEqual(psk, new_keys[pair])
            extra = set(new_stanzas) - set(old_stanzas)
            added += len(extra)
            for name in extra:
                self.assertIn('overcloud-novacompute-2', name)
            old_m, new_m = base.manifest(old, host), base.manifest(new, host)
            for name, entry in old_m['conns'].items():
                self.assertEqual(entry, new_m['conns'][name])
        self.assertGreater(added, 0)

    def test_removing_a_compute_only_removes(self):
        key = self.master_key()
        _, old = self._render(3, key)
        new_plan, new = self._render(2, key)
        for host in new_plan.hosts:
            old_stanzas, new_stanzas = stanzas_of(old, host), stanzas_of(
                new, host)
            gone = set(old_stanzas) - set(new_stanzas)
            self.assertTrue(all('novacompute-2' in n for n in gone))
            self.assertFalse(set(new_stanzas) - set(old_stanzas))
            for name, text in new_stanzas.items():
                self.assertEqual(old_stanzas[name], text)

    def test_epoch_bump_changes_every_key_and_no_digest(self):
        topo = base.fixture_topology('stock')
        key = self.master_key()
        out0, _ = self.render(base.make_plan(topo), key)
        out1, _ = self.render(base.make_plan(topo, key_epoch=1), key)
        host = 'overcloud-controller-0'
        k0, k1 = secrets_of(out0, host), secrets_of(out1, host)
        self.assertEqual(set(k0), set(k1))
        self.assertFalse(set(k0.values()) & set(k1.values()))
        # a new key is not a new conn: the node rereads, it replaces none
        m0, m1 = base.manifest(out0, host), base.manifest(out1, host)
        self.assertEqual(m0['conns'], m1['conns'])
        self.assertEqual((0, 1), (m0['key_epoch'], m1['key_epoch']))


class TestRender(base.TestCase):

    def test_modes(self):
        out, _ = self.render(base.make_plan(base.fixture_topology('stock')))
        for dirpath, _, files in os.walk(out):
            for name in files:
                mode = os.stat(os.path.join(dirpath, name)).st_mode & 0o777
                self.assertEqual(0o600 if name.endswith('.secrets')
                                 else 0o644, mode, name)

    def test_holder_conns_carry_their_vips_alias(self):
        the_plan = base.make_plan(base.fixture_topology('stock'))
        out, _ = self.render(the_plan)
        kinds = collections.Counter()
        for host in the_plan.hosts.values():
            conf = base.read_tree(os.path.join(out, host.name))
            for conn in host.conns:
                kinds[conn.kind] += 1
                if conn.kind == plan.HOST:
                    continue
                sections = libreswan.split_conf(
                    conf[names.vip_conf(conn.vip)])
                alias = [line.strip() for line in
                         sections[conn.name].splitlines()
                         if 'connalias=' in line]
                # one whack by the alias starts or stops all of a holder's
                self.assertEqual(
                    ['connalias=%s' % names.vip_holder_alias(conn.vip)]
                    if conn.kind == plan.VIP_HOLDER else [], alias)
        self.assertTrue(kinds[plan.VIP_HOLDER] and kinds[plan.VIP_PEER])

    def test_parallel_render_is_the_serial_one(self):
        # forked workers fill the key table's shares, then render their
        # hosts: the same files, byte for byte, and every key line the
        # pair's own key (both ends), in mesh and group mode
        key = keys.MasterKey(b'p' * 32)
        for mode in ('mesh', 'group'):
            the_plan = base.make_plan(sources.topology_of(
                synth.stack_outputs([synth.controller(3),
                                     synth.compute(5)]),
                synth.net_cidr_map()), mode=mode)
            self.assertEqual(mode, the_plan.mode)
            trees = []
            for parallel_from in (render.PARALLEL_FROM, 2):
                self.useFixture(fixtures.MonkeyPatch(
                    'tripleo_ipsec.render.PARALLEL_FROM', parallel_from))
                out, _ = self.render(the_plan, key)
                trees.append({host: base.read_tree(os.path.join(out, host))
                              for host in the_plan.hosts})
            self.assertEqual(trees[0], trees[1])
            lines = 0
            for host, files in trees[1].items():
                for name, text in files.items():
                    if not name.endswith('.secrets'):
                        continue
                    network = re.search(r'tripleo-(?:vip-)?(\w+?)\.secrets',
                                        name)
                    for left, right, psk in re.findall(
                            r'^(\S+) (\S+) : PSK "(\S+)"$', text, re.M):
                        lines += 1
                        conn = [c for c in the_plan.hosts[host].conns
                                + the_plan.hosts[host].groups
                                if c.left == left]
                        self.assertTrue(conn, (host, name, left))
                        self.assertEqual(key.psk(conn[0].network, left,
                                                 right, 0), psk, network)
            self.assertGreater(lines, 50)

    def test_the_key_table_derives_each_pair_once(self):
        class Counting(object):
            def __init__(self):
                self.key, self.calls = keys.MasterKey(b't' * 32), []

            def psk(self, *args):
                self.calls.append(args)
                return self.key.psk(*args)

            def psks(self, network, address, peers, epoch):
                self.calls.extend((network, address, peer, epoch)
                                  for peer in peers)
                return self.key.psks(network, address, peers, epoch)

        members = {'internal_api': (
            ('a', '172.16.2.10'), ('b', '172.16.2.9'), ('c', 'fd00::1'),
            ('d', '172.16.2.11'), ('e', 'fd00::2'), ('f', '172.16.2.12')),
            'storage': (('a', '172.16.1.10'), ('b', '172.16.1.11'))}
        counting = Counting()
        table = render._Keys(counting, 3, members)
        self.addCleanup(table.close)
        # in three shares, as three workers would fill it
        for part in range(3):
            table.derive(part, 3)
        # 4 IPv4 and 2 IPv6 hosts, then 2: 6 + 1 + 1 pairs, once each
        self.assertEqual(8, len(counting.calls))
        self.assertEqual(8, len(set(counting.calls)))
        for network, hosts in members.items():
            for (_, a), (_, b) in itertools.permutations(hosts, 2):
                if (':' in a) != (':' in b):
                    continue
                self.assertEqual(counting.key.psk(network, a, b, 3),
                                 table.pair(network, a, b), (a, b))
        # a group host's key lines: the row of its pairs, in member order
        for network, hosts in members.items():
            for _, a in hosts:
                self.assertEqual(
                    [(b, counting.key.psk(network, a, b, 3))
                     for _, b in hosts if b != a and (':' in a) == (':' in b)],
                    table.row(network, a), a)
        self.assertIsNone(table.row('internal_api', '172.16.2.5'))
        self.assertEqual(8, len(counting.calls))
        # a VIP is no member: its pairs are derived when asked for
        self.assertEqual(
            counting.key.psk('internal_api', '172.16.2.5', '172.16.2.9', 3),
            table.pair('internal_api', '172.16.2.5', '172.16.2.9'))
        self.assertEqual(9, len(counting.calls))

    def test_fixtures_are_reproducible(self):
        from tests.fixtures import make
        for name, text in make.files().items():
            with open(os.path.join(base.FIXTURES, name)) as f:
                self.assertEqual(text, f.read(), name)


class TestFirewall(base.TestCase):

    def test_rules_per_protected_network_and_subnet(self):
        topo = base.fixture_topology('spine_leaf')
        rules = base.make_plan(topo).firewall_rules
        for net in ('internal_api', 'storage', 'storage_mgmt'):
            for cidr in topo.cidrs[net]:
                members = [h for h in topo.members(net)]
                self.assertTrue(members)
                ike = rules['100 ipsec ike %s %s' % (net, cidr)]
                self.assertEqual({'proto': 'udp', 'dport': [500, 4500],
                                  'source': cidr, 'ipversion': 'ipv4'}, ike)
                esp = rules['101 ipsec esp %s %s' % (net, cidr)]
                self.assertEqual({'proto': 'esp', 'source': cidr,
                                  'ipversion': 'ipv4'}, esp)
        self.assertFalse([r for r in rules if 'tenant' in r or
                          'external' in r or 'ctlplane' in r])

    def test_ipv6_subnets_carry_their_ipversion(self):
        rules = base.make_plan(
            base.fixture_topology('dual_stack')).firewall_rules
        self.assertEqual({'proto': 'esp', 'ipversion': 'ipv6',
                          'source': 'fd00:fd00:fd00:2000::/64'},
                         rules['101 ipsec esp internal_api '
                               'fd00:fd00:fd00:2000::/64'])
        self.assertEqual(6, len(rules))

    def test_no_subnet_no_rule(self):
        # Without net_cidr_map nothing says which sources to let in: no
        # rule, never one open to any source (Heat, given no CIDR, makes
        # none either).
        topo = dataclasses.replace(base.fixture_topology('dual_stack'),
                                   cidrs={})
        self.assertEqual({}, base.make_plan(topo).firewall_rules)
        cidrs = {'internal_api': ('fd00:fd00:fd00:2000::/64',)}
        topo = dataclasses.replace(topo, cidrs=cidrs)
        self.assertEqual(
            ['100 ipsec ike internal_api fd00:fd00:fd00:2000::/64',
             '101 ipsec esp internal_api fd00:fd00:fd00:2000::/64'],
            sorted(base.make_plan(topo).firewall_rules))

    def test_plan_json_summary(self):
        the_plan = base.make_plan(base.fixture_topology('stock'))
        data = the_plan.to_dict()
        self.assertEqual({'hosts': 5, 'conns': 123,
                          'max_conns_per_host': 33, 'max_sas_per_host': 33,
                          'over_budget': [], 'mode': 'mesh'}, data['summary'])
        self.assertEqual(sorted(data['firewall_rules']),
                         sorted(the_plan.firewall_rules))


class TestSkipNetworks(base.TestCase):

    def test_default_names_may_be_absent(self):
        networks = {'ctlplane': ('192.168.24.0/24',),
                    'internal_api': ('172.16.2.0/24',)}
        roles = [synth.Role('Controller', 2, tuple(networks),
                            synth.CONTROLLER_SERVICES, 'ctl-%index%')]
        topo = sources.topology_of(synth.stack_outputs(roles, networks))
        self.assertEqual(('internal_api',), base.make_plan(topo).networks)

    def test_other_names_must_exist(self):
        topo = base.fixture_topology('stock')
        exc = self.assertRaises(errors.Error, base.make_plan, topo,
                                skip_networks=('tenant', 'bogus'))
        self.assertIn('bogus', str(exc))
        self.assertNotIn('tenant,', str(exc))


class TestBudget(base.TestCase):
    """What each node carries, and the warning past IpsecConnBudget."""

    def test_load_per_host(self):
        the_plan = base.make_plan(base.fixture_topology('stock'))
        load = the_plan.load
        controller = load['overcloud-controller-0']
        # 2 controllers + 2 computes on internal_api and storage, 2
        # controllers on storage_mgmt; 5 VIPs: 4 peer conns (not its own
        # network's peers only) and holder conns to every other member
        self.assertEqual(len(the_plan.hosts['overcloud-controller-0'].conns),
                         controller['child_sas'])
        self.assertEqual(controller['child_sas'], controller['ike_sas'])
        self.assertEqual(2 * controller['child_sas'],
                         controller['xfrm_states'])
        self.assertEqual(0, controller['clear'])
        compute = load['overcloud-novacompute-0']
        self.assertLess(compute['child_sas'], controller['child_sas'])
        compressed = base.make_plan(base.fixture_topology('stock'),
                                    compress=True).load
        self.assertEqual(4 * controller['child_sas'],
                         compressed['overcloud-controller-0']['xfrm_states'])
        # passthrough conns count as conns, not SAs
        topo = base.fixture_topology('composable')
        plain = base.make_plan(topo).load
        exempt = base.make_plan(topo, clear_exemptions=('tcp/22',)).load
        for name, entry in exempt.items():
            self.assertEqual(plain[name]['child_sas'], entry['child_sas'])
            self.assertEqual(plain[name]['conns'] + entry['clear'],
                             entry['conns'])
            self.assertGreater(entry['clear'], 0, name)

    def test_over_budget(self):
        topo = base.fixture_topology('stock')
        self.assertEqual([], base.make_plan(topo).over_budget())
        lines = base.make_plan(topo, conn_budget=20).over_budget()
        # the three controllers carry 33 SAs, the computes 12
        self.assertEqual(3, len(lines), lines)
        self.assertTrue(all('33 SAs' in line and 'IpsecConnBudget' in line
                            for line in lines), lines)
        self.assertEqual([], base.make_plan(topo, conn_budget=0)
                         .over_budget())
        self.assertEqual([], base.make_plan(topo, conn_budget=33)
                         .over_budget())


class TestMtu(base.TestCase):
    """The inner MTU per protected network and family, and the floor."""

    def test_kernel_figures(self):
        # research/keys-groups-mtu.md, from the kernel's xfrm_state_mtu
        for link, udp, inner in ((1500, False, 1466), (1500, True, 1458),
                                 (9000, False, 8966), (1450, False, 1414)):
            for family in (4, 6):
                self.assertEqual(inner, proposals.inner_mtu(
                    'aes_gcm256', link, family, udp), (link, udp, family))
        # a proposal's worst case: CBC with SHA2-512 costs the most
        self.assertEqual(1442, proposals.inner_mtu(
            'aes_gcm256,aes256-sha2_512', 1500, 4))
        self.assertEqual(1442, proposals.inner_mtu('aes256', 1500, 4))
        self.assertEqual(1474, proposals.inner_mtu('aes_gcm_a', 1500, 4))

    def test_from_the_inventory_and_the_map(self):
        outputs = base.fixture_outputs('stock')
        inv = sources.inventory(outputs)
        inv['Controller']['vars']['internal_api_mtu'] = 9000
        inv['Compute']['vars']['internal_api_mtu'] = '1500'
        inv['Controller']['vars']['storage_mtu'] = 9000
        topo = topology.build(inv, sources.vip_map(outputs))
        # the smallest of the roles', as text or number
        self.assertEqual({'internal_api': 1500, 'storage': 9000},
                         topo.mtus)
        the_plan = base.make_plan(topo)
        self.assertEqual(
            {'link': 1500, 'ipv4': {'inner': 1466, 'ping': 1438}},
            the_plan.mtu['internal_api'])
        self.assertEqual(8966, the_plan.mtu['storage']['ipv4']['inner'])
        self.assertEqual({'link': None}, the_plan.mtu['storage_mgmt'])
        self.assertEqual(8958, base.make_plan(topo, encapsulation='yes')
                         .mtu['storage']['ipv4']['inner'])
        topo = topology.build(inv, sources.vip_map(outputs),
                              net_mtu_map={'internal_api': 1400})
        self.assertEqual(1400, topo.mtus['internal_api'])
        for bad in ('jumbo', 100, 70000, True, None):
            self.assertRaisesRegex(
                errors.Error, r'net_mtu_map.internal_api: .* is not an MTU',
                topology.build, inv, sources.vip_map(outputs),
                net_mtu_map={'internal_api': bad})
        inv['Compute']['vars']['internal_api_mtu'] = 'big'
        self.assertRaisesRegex(errors.Error, 'role Compute: internal_api_mtu',
                               topology.build, inv)

    def test_floor(self):
        topo = sources.topology_of(base.fixture_outputs('dual_stack'),
                                   base.fixture_cidrs('dual_stack'),
                                   net_mtu_map={'internal_api': 1300})
        # 1300 leaves 1266 inside ESP: under IPv6's 1280
        self.assertRaisesRegex(
            errors.Error, r'^network internal_api: ESP \(aes_gcm256\) leaves '
            r'IPv6 packets 1266 bytes of its MTU 1300, below the floor of '
            r'1280 \(IpsecMtuFloor\)', base.make_plan, topo)
        self.assertEqual(1266, base.make_plan(topo, mtu_floor=0)
                         .mtu['internal_api']['ipv6']['inner'])
        self.assertEqual(1218, base.make_plan(topo, mtu_floor=0)
                         .mtu['internal_api']['ipv6']['ping'])


class TestCollector(base.TestCase):
    """build turns Python's garbage collector off while it runs, only."""

    def test_left_as_it_was(self):
        self.addCleanup(gc.enable)
        topo = base.fixture_topology('stock')
        seen = []
        real = plan._build

        def spy(*args):
            seen.append(gc.isenabled())
            return real(*args)

        self.useFixture(fixtures.MockPatchObject(plan, '_build', spy))
        gc.enable()
        base.make_plan(topo)
        self.assertTrue(gc.isenabled())
        # a refused input too
        self.assertRaises(errors.Error, base.make_plan, topo,
                          skip_networks=('bogus',))
        self.assertTrue(gc.isenabled())
        gc.disable()
        base.make_plan(topo)
        self.assertFalse(gc.isenabled())
        self.assertEqual([False, False, False], seen)
