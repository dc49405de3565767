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

"""A deploy through the real path, short of an overcloud: Heat's engine
resolves role_data from environments/ipsec.yaml, the step runner writes
config-download's playbook, and ansible-playbook runs it with
tripleo-common's inventory: external tasks on the undercloud (this
machine), node tasks on network-namespace nodes with their own pluto."""

import os

import yaml

from tests import base
from tests import nodes
from tests import pluto
from tests import test_pacemaker
from tripleo_ipsec import plan
from tripleo_ipsec import sources
from tripleo_ipsec_lab import heat
from tripleo_ipsec_lab import overcloud
from tripleo_ipsec_lab import steps
from tripleo_ipsec_lab import synth

APPLY = 'Reconcile this node\'s IPsec conns'
RENDER = 'Render every node\'s IPsec bundle'
PACEMAKER = 'Give each VIP its IPsec resource in pacemaker'


class TestDeploy(base.TestCase):

    def setUp(self):
        super(TestDeploy, self).setUp()
        why = pluto.available()
        if why:
            self.skipTest(why)
        self.nodes = nodes.Nodes()
        self.addCleanup(self.nodes.stop)
        self.work = self.tempdir()
        self.key = os.path.join(self.work, 'tripleo-ipsec', 'master.key')
        # the controllers' cluster, as a CIB file pcs -f works on
        why = test_pacemaker.unavailable()
        if why:
            self.skipTest(why)
        self.cib = os.path.join(self.work, 'cib.xml')
        self.role_data = heat.role_data()

    def overcloud(self, computes, blacklist=()):
        """Stack outputs of 3 controllers + N computes; nodes for them."""
        outputs = synth.stack_outputs(
            [synth.controller(3), synth.compute(computes)],
            blacklist=blacklist)
        topo = sources.topology_of(outputs, synth.net_cidr_map())
        if not os.path.exists(self.cib):
            test_pacemaker.cluster_cib(self, self.cib, plan.build(
                topo, base.options.Options()).vips)
        for host in topo.hosts:
            if host.name not in self.nodes.nodes:
                self.nodes.add(host.name, sorted(host.addresses.values()))
        return outputs, topo

    def inventory(self, outputs, **extra):
        """config-download's inventory, pointed at the test nodes."""
        path = os.path.join(self.work, 'tripleo-ansible-inventory.yaml')
        with sources.quiet():
            sources.tripleo_inventory(
                outputs, ansible_ssh_user='tripleo-admin').\
                write_static_inventory(path)
        with open(path) as f:
            inv = yaml.safe_load(f)
        connection = self.nodes.connection_vars()
        for group in inv.values():
            for name, hvars in (group.get('hosts') or {}).items():
                if name in connection:
                    hvars.update(connection[name], **extra)
        with open(path, 'w') as f:
            yaml.safe_dump(inv, f)
        return path

    def deploy(self, outputs, step_list=steps.STEPS, *args):
        """Run the step playbook; {task name: {host: [results]}}."""
        playbook = steps.write(self.role_data, self.work, step_list)
        global_vars = os.path.join(self.work, 'global_vars.yaml')
        with open(global_vars, 'w') as f:
            yaml.safe_dump({'net_vip_map': outputs['VipMap'],
                            'net_cidr_map': synth.net_cidr_map()}, f)
        rc, stats, data = self.nodes.run(
            playbook, self.inventory(outputs, tripleo_ipsec_cib_file=self.cib),
            '-e', '@' + global_vars, *args)
        self.assertEqual((0, []), (rc, overcloud.failures(data)), stats)
        return overcloud.by_task(data)

    def loaded(self):
        return {n: set(node.conns()) for n, node in self.nodes.nodes.items()}

    def test_steps_rerun_and_scale_out(self):
        outputs, topo = self.overcloud(2)
        the_plan = plan.build(topo, base.options.Options())

        # step 1 only: node-to-node conns, no VIP conns yet
        first = self.deploy(outputs, (1,))
        self.assertEqual(['undercloud'], list(first[RENDER]))
        self.assertTrue(os.path.exists(self.key))
        with open(self.key) as f:
            key = f.read()
        for name, conns in self.loaded().items():
            self.assertEqual({c.name for c in the_plan.hosts[name].conns
                              if c.kind == plan.HOST}, conns, name)

        # every step: step 3 adds the conns towards the VIPs
        self.deploy(outputs)
        for name, conns in self.loaded().items():
            self.assertEqual({c.name for c in the_plan.hosts[name].conns
                              if c.kind != plan.VIP_HOLDER}, conns, name)
        serials = {n: {c: v.serial for c, v in node.conns().items()}
                   for n, node in self.nodes.nodes.items()}

        # the same deploy again changes nothing, with the same key
        again = self.deploy(outputs)
        self.assertEqual(['undercloud'], list(again[RENDER]))
        # each node reconciled twice: step 1 and step 3
        self.assertEqual({n: 2 for n in self.nodes.nodes},
                         {h: len(r) for h, r in again[APPLY].items()})
        changed = [(t, h) for t, hosts in again.items()
                   for h, results in hosts.items()
                   for r in results if r.get('changed')]
        self.assertEqual([], changed)
        with open(self.key) as f:
            self.assertEqual(key, f.read())
        self.assertEqual(serials, {
            n: {c: v.serial for c, v in node.conns().items()}
            for n, node in self.nodes.nodes.items()})
        # step 3 made each VIP's IPsec resource, on one controller, once
        with open(self.cib) as f:
            cib = f.read()
        for vip in the_plan.vips:
            self.assertIn('id="%s"' % vip.resource['id'], cib)
        self.assertEqual(0, pluto.run(['crm_verify', '-x', self.cib])
                         .returncode)
        self.assertEqual(['overcloud-controller-0'],
                         list(again[PACEMAKER]))
        agent = os.path.join(self.nodes.workdir, 'ocf',
                             'overcloud-controller-1', 'vip')
        self.assertTrue(os.access(agent, os.X_OK))

        # one more compute: only its conns are added anywhere
        outputs, topo = self.overcloud(3)
        grown = self.deploy(outputs)
        new = 'overcloud-novacompute-2'
        for host, results in grown[APPLY].items():
            for result in results:
                self.assertEqual([], result['replaced'] + result['deleted'],
                                 host)
                if host != new:
                    self.assertTrue(all(new in c for c in result['added']),
                                    host)
        the_plan = plan.build(topo, base.options.Options())
        for name, conns in self.loaded().items():
            self.assertEqual({c.name for c in the_plan.hosts[name].conns
                              if c.kind != plan.VIP_HOLDER}, conns, name)
        for name, before in serials.items():
            now = {c: v.serial for c, v in self.nodes.nodes[name].conns()
                   .items()}
            self.assertEqual(before, {c: now[c] for c in before}, name)

        # a --limit run renders again with the same key, touches no other
        limited = self.deploy(outputs, steps.STEPS, '--limit',
                              'undercloud,overcloud-controller-0')
        self.assertEqual({'overcloud-controller-0'}, set(limited[APPLY]))
        self.assertFalse([r for r in limited[RENDER]['undercloud']
                          if r['changed']])
        with open(self.key) as f:
            self.assertEqual(key, f.read())

    def test_excluded_node_is_left_alone(self):
        excluded = 'overcloud-novacompute-1'
        outputs, topo = self.overcloud(2, blacklist=[excluded])
        results = self.deploy(outputs)
        self.assertNotIn(excluded, results[APPLY])
        self.assertEqual({}, self.nodes.nodes[excluded].conns())
        self.assertEqual(set(), self.nodes.nodes[excluded].files())
        bundles = os.path.join(self.work, 'tripleo-ipsec', 'bundles')
        self.assertNotIn(excluded, os.listdir(bundles))
        # the others keep conns to it, so its tunnels stay up
        peers = self.nodes.nodes['overcloud-novacompute-0'].conns()
        self.assertTrue([c for c in peers if excluded in c])

    def test_uninstall(self):
        outputs, topo = self.overcloud(2)
        self.deploy(outputs)
        with open(self.cib) as f:
            self.assertIn('provider="tripleo-ipsec"', f.read())
        self.deploy(outputs, steps.STEPS, '-e', 'tripleo_ipsec_state=absent')
        for name, node in self.nodes.nodes.items():
            self.assertEqual({}, node.conns(), name)
            self.assertEqual(set(), node.files(), name)
            self.assertFalse(os.path.exists(os.path.join(
                self.nodes.workdir, 'ocf', name, 'vip')), name)
        with open(self.cib) as f:
            cib = f.read()
        self.assertIn('type="IPaddr2"', cib)     # the VIPs stay
        self.assertNotIn('provider="tripleo-ipsec"', cib)
