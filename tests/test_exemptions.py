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

"""IpsecClearExemptions: the plan, and the role's apply on real plutos.

The role's apply module loads a dual-stack controller's bundle with
``tcp/22`` (every protected network) and ``icmp@internal_api`` into a real
pluto, 4.10 and 5.2.  The kernel then holds, for each exemption and
subnet, passthrough policies (no template) in both directions whose
priority beats every encrypted conn's; verify counts them apart from the
conns that need an SA, and names one that is gone.
"""

import json
import os
import re

from tests import base
from tests import pluto
from tests import test_libreswan5
from tripleo_ipsec.errors import Error
from tripleo_ipsec.node import libreswan

EXEMPT = ('tcp/22', 'icmp@internal_api')
HOST = 'overcloud-controller-0'

# ip xfrm policy: a policy's selector line, its dir line, its template
_POLICY = re.compile(
    r'^src (\S+) dst (\S+)(?: proto (\S+))?(?: sport (\d+))?'
    r'(?: dport (\d+))?[^\n]*\n\tdir (\w+) priority (\d+)[^\n]*\n'
    r'((?:\t[^\n]*\n)*)', re.M)


def policies(text):
    """``ip xfrm policy`` -> its policies, as tuples.

    (src, dst, proto, sport, dport, dir, priority, encrypted)
    """
    return [(src, dst, proto or '', sport or '', dport or '', d, int(prio),
             'tmpl' in rest)
            for src, dst, proto, sport, dport, d, prio, rest in
            _POLICY.findall(text + '\n')]


class TestPlan(base.TestCase):

    def test_conns_per_subnet_and_way(self):
        topo = base.fixture_topology('dual_stack')
        the_plan = base.make_plan(topo, clear_exemptions=EXEMPT)
        mine = the_plan.hosts[HOST]
        by_net = {}
        for c in mine.clear:
            by_net.setdefault(c.network, []).append(c)
        self.assertEqual(set(the_plan.networks), set(by_net))
        for net, conns in by_net.items():
            address = [h for h in topo.hosts if h.name == HOST][0] \
                .addresses[net]
            six = ':' in address
            subnets = [c for c in topo.cidrs[net] if (':' in c) == six]
            ways = {('tcp', 'tcp/22'), ('tcp/22', 'tcp')}
            if net == 'internal_api':
                icmp = 'ipv6-icmp' if six else 'icmp'
                ways.add((icmp, icmp))
            self.assertEqual(len(ways) * len(subnets), len(conns), net)
            self.assertEqual(ways, {(c.left_proto, c.right_proto)
                                    for c in conns})
            self.assertEqual({address}, {c.left for c in conns})
            self.assertEqual(set(subnets), {c.right_subnet for c in conns})
        # none without the option
        self.assertEqual((), base.make_plan(topo).hosts[HOST].clear)

    def test_no_subnets_no_exemption(self):
        # the stock fixture comes without net_cidr_map
        self.assertRaisesRegex(
            Error, 'no IPv4 subnet in net_cidr_map', base.make_plan,
            base.fixture_topology('stock'), clear_exemptions=('tcp/22',))


class ApplyMixin(object):
    """Load HOST's bundle with the exemptions through the apply module."""

    class Module(object):
        check_mode = False
        params = {'vips': True, 'initiate': False, 'stage': False}

        def warn(self, message):
            raise AssertionError(message)

    def bundle(self):
        topo = base.fixture_topology('dual_stack')
        the_plan = base.make_plan(topo, clear_exemptions=EXEMPT)
        out, _ = self.render(the_plan)
        files = {}
        for path, (mode, data) in base.tree(os.path.join(out, HOST)).items():
            files[path] = {'mode': '%04o' % mode, 'content': data.decode()}
        addresses = sorted(a for h in topo.hosts if h.name == HOST
                           for a in h.addresses.values())
        return the_plan, files, addresses

    def check(self, lw, root, files, the_plan):
        apply = test_libreswan5.TestApplyOn5._apply(self)
        manifest_path = [p for p in files if p.endswith('.manifest.json')][0]
        changed, result = apply.present(self.Module(), lw, root, files,
                                        manifest_path)
        self.assertTrue(changed)
        with open(os.path.join(root, manifest_path)) as f:
            manifest = json.load(f)
        clear = libreswan.clear_conns(manifest)
        self.assertEqual({c.name for c in the_plan.hosts[HOST].clear},
                         set(clear))
        self.assertLessEqual(set(clear), set(result['added']))
        found = policies(lw.ip('xfrm', 'policy', 'list').stdout)
        encrypted = [p for p in found if p[7]]
        passthrough = [p for p in found if not p[7] and p[2] and
                       p[6] < 1000000000]
        self.assertTrue(encrypted)
        worst = min(p[6] for p in encrypted)
        for c in the_plan.hosts[HOST].clear:
            mine = [p for p in passthrough
                    if (p[0], p[1]) in ((c.left_subnet, c.right_subnet),
                                        (c.right_subnet, c.left_subnet))
                    and p[2] == c.left_proto.split('/')[0]]
            self.assertTrue(mine, c.name)
            # each beats every conn that encrypts
            self.assertLess(max(p[6] for p in mine), worst, c.name)
        for net in the_plan.networks:
            here = [p for p in passthrough if p[2] == 'tcp' and
                    the_plan.hosts[HOST].clear and
                    any(p[0] == c.left_subnet for c in
                        the_plan.hosts[HOST].clear if c.network == net)]
            # SSH both ways: to port 22 and from it, in and out
            self.assertEqual({('', '22', 'out'), ('22', '', 'out'),
                              ('', '22', 'in'), ('22', '', 'in')},
                             {(p[3], p[4], p[5]) for p in here
                              if p[5] != 'fwd'}, net)
        icmp = {p[2] for p in passthrough if 'icmp' in p[2]}
        self.assertTrue(icmp)
        # verify: the passthrough conns need no SA, only their policies
        report = libreswan.verify(manifest, lw.status(), vips=True,
                                  net=lw.net())
        self.assertEqual([], report['clear_missing'])
        self.assertFalse(set(clear) & set(report['missing']))
        self.assertEqual(len(manifest['conns']) - len(clear) -
                         len(libreswan.holder_conns(manifest)),
                         report['expected'])
        # the control: one deleted by hand is named
        gone = sorted(clear)[0]
        lw.delete(gone)
        report = libreswan.verify(manifest, lw.status(), vips=True,
                                  net=lw.net())
        self.assertEqual([gone], report['clear_missing'])
        self.assertFalse(report['ok'])
        self.assertIn(gone, libreswan.missing_message(report))
        # a rerun puts it back and touches nothing else
        changed, again = apply.present(self.Module(), lw, root, files,
                                       manifest_path)
        self.assertEqual([gone], again['added'])
        self.assertEqual([], again['replaced'] + again['deleted'])
        report = libreswan.verify(manifest, lw.status(), vips=True,
                                  net=lw.net())
        self.assertEqual([], report['clear_missing'])


class TestApply4(ApplyMixin, base.TestCase):

    def test_passthrough_policies_beat_every_conn(self):
        why = pluto.available()
        if why:
            self.skipTest(why)
        the_plan, files, addresses = self.bundle()
        root = self.tempdir()
        scratch = pluto.ScratchPluto(addresses,
                                     '%s/etc/ipsec.d/*.secrets' % root)
        self.addCleanup(scratch.stop)
        lw = libreswan.Libreswan(scratch.ctl, 60, (
            'ip', 'netns', 'exec', scratch.netns, 'ipsec'))
        self.assertEqual(4, lw.version[0])
        self.check(lw, root, files, the_plan)


class TestApply5(ApplyMixin, test_libreswan5.Libreswan5TestCase):

    def test_passthrough_policies_beat_every_conn(self):
        the_plan, files, addresses = self.bundle()
        root = self.tempdir()
        scratch = self.pluto5(addresses, '%s/etc/ipsec.d/*.secrets' % root)
        self.assertEqual(5, scratch.lw.version[0])
        self.check(scratch.lw, root, files, the_plan)
