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

"""The tripleo_ipsec Ansible role, run with ansible-playbook against nodes
that are network namespaces, each with its own /etc and its own real pluto.

IKE needs no kernel ESP to load conns and install their trap policies, so
this runs on a kernel without ESP; tunnels coming up is the lab's job.
"""

import json
import os
import re
import shutil
import sys
import time

import fixtures

from tests import base
from tests import nodes
from tests import pluto
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import plan
from tripleo_ipsec import sources
from tripleo_ipsec_lab import synth

PLAYBOOK = os.path.join(nodes.TOP, 'tests', 'playbooks', 'apply.yml')
APPLY = 'Reconcile this node\'s IPsec conns'


class RoleTestCase(base.TestCase):

    def setUp(self):
        super(RoleTestCase, self).setUp()
        why = pluto.available()
        if why:
            self.skipTest(why)
        self.key = self.master_key()
        self.nodes = nodes.Nodes()
        self.addCleanup(self.nodes.stop)

    def bundle(self, computes=2, **opts):
        """Render the stock overcloud with N computes; (plan, out)."""
        topo = sources.topology_of(synth.stack_outputs(
            [synth.controller(3), synth.compute(computes)]))
        the_plan = base.make_plan(topo, **opts)
        out, _ = self.render(the_plan, self.key)
        for host in topo.hosts:
            if host.name not in self.nodes.nodes:
                self.nodes.add(host.name, sorted(host.addresses.values()))
        return the_plan, out

    def deploy(self, out, *args, **extra):
        """Run the role; {host: the apply task's result}."""
        rc, stats, data = self.nodes.playbook(PLAYBOOK, out, *args, **extra)
        self.data = data
        results = {}
        for task in data['tasks']:
            if task['name'].endswith(APPLY):
                results = task['hosts']
        self.assertEqual(set(self.nodes.nodes), set(results), stats)
        failed = {h: r.get('msg') for h, r in results.items()
                  if r.get('failed')}
        self.assertEqual((0, {}), (rc, failed), stats)
        return results

    def serials(self):
        return {name: {c: conn.serial for c, conn in node.conns().items()}
                for name, node in self.nodes.nodes.items()}

    def assertLoaded(self, the_plan):
        """Every node has exactly its bundle's conns, routed, with keys."""
        for name, host_plan in the_plan.hosts.items():
            node = self.nodes.nodes[name]
            loaded = node.conns()
            wanted = {c.name for c in host_plan.conns
                      if c.kind != plan.VIP_HOLDER}
            self.assertEqual(wanted, set(loaded), name)
            for conn in loaded.values():
                self.assertEqual('prospective erouted', conn.routing,
                                 conn.name)
            self.assertEqual({frozenset((c.left, c.right))
                              for c in host_plan.conns},
                             {frozenset(p) for p in node.psks()}, name)
            files = {os.path.basename(p) for p in base.read_tree(
                os.path.join(self.out_of(name), 'etc'))}
            # and the ipsec service's stop batch (its drop-in runs it)
            files.add(os.path.basename(names.STOP_BATCH))
            self.assertEqual(files, node.files(), name)
            # the kernel's safety net: both directions of every loaded pair
            net = set() if the_plan.options.failure_policy != 'private' \
                else {k for c in host_plan.conns if c.name in loaded and
                      c.kind != plan.VIP_HOLDER
                      for k in ((c.left, c.right, 'out'),
                                (c.right, c.left, 'in'))}
            self.assertEqual(net, set(node.lw.net()), name)
            # the batch puts the net back as it is, once flushed
            self.assertEqual(libreswan.stop_batch(net),
                             node.read(names.STOP_BATCH), name)
            self.assertEqual(libreswan.service_dropin(),
                             node.read(names.SERVICE_DROPIN), name)

    def out_of(self, name):
        return os.path.join(self._out, name)


class TestApply(RoleTestCase):

    def test_first_run_loads_and_rerun_changes_nothing(self):
        the_plan, self._out = self.bundle()
        first = self.deploy(self._out)
        self.assertEqual(set(the_plan.hosts), set(first))
        self.assertTrue(all(r['changed'] for r in first.values()))
        self.assertLoaded(the_plan)
        for name, node in self.nodes.nodes.items():
            for rel in base.read_tree(os.path.join(self._out, name)):
                mode = os.stat(os.path.join(node.etc, rel[4:])).st_mode
                self.assertEqual(0o600 if rel.endswith('.secrets')
                                 else 0o644, mode & 0o777, rel)
        before = self.serials()
        again = self.deploy(self._out)
        self.assertFalse([h for h, r in again.items() if r['changed']])
        self.assertEqual(before, self.serials())

    def test_check_mode_changes_nothing(self):
        the_plan, self._out = self.bundle()
        self.deploy(self._out)
        before = self.serials()
        etc = {n: base.tree(node.etc)
               for n, node in self.nodes.nodes.items()}
        _, out = self.bundle(esp='aes_gcm128')
        checked = self.deploy(out, '--check')
        self.assertTrue(all(r['changed'] for r in checked.values()))
        self.assertTrue(all(r['replaced'] for r in checked.values()))
        self.assertEqual(before, self.serials())
        self.assertEqual(etc, {n: base.tree(node.etc)
                               for n, node in self.nodes.nodes.items()})

    def test_uninstall_leaves_nothing(self):
        the_plan, self._out = self.bundle()
        self.deploy(self._out)
        gone = self.deploy(self._out, tripleo_ipsec_state='absent')
        self.assertTrue(all(r['changed'] for r in gone.values()))
        for name, node in self.nodes.nodes.items():
            self.assertEqual({}, node.conns(), name)
            self.assertEqual(set(), node.files(), name)
            self.assertEqual([], node.psks(), name)
            self.assertEqual(set(), node.lw.net(), name)
            self.assertRaises(FileNotFoundError, node.read,
                              names.SERVICE_DROPIN)
        again = self.deploy(self._out, tripleo_ipsec_state='absent')
        self.assertFalse([h for h, r in again.items() if r['changed']])
        # IpsecFailurePolicy: disable is the same, from a deployed cloud
        self.deploy(self._out)
        self.assertLoaded(the_plan)
        gone = self.deploy(self._out, tripleo_ipsec_failure_policy='disable')
        self.assertTrue(all(r['changed'] for r in gone.values()))
        for name, node in self.nodes.nodes.items():
            self.assertEqual(({}, set(), set()),
                             (node.conns(), node.files(), node.lw.net()),
                             name)

    def test_holder_conn_loaded_by_the_agent_is_kept(self):
        the_plan, self._out = self.bundle()
        self.deploy(self._out)
        node = self.nodes.nodes['overcloud-controller-0']
        holder = [c for c in the_plan.hosts[node.name].conns
                  if c.kind == plan.VIP_HOLDER][0]
        # the VIP lands here, and its OCF resource loads its conns
        node.exec_(['ip', 'addr', 'add', holder.left + '/32', 'dev', 'lo'])
        # as the agent does: by name (holder conns are auto=ignore, which
        # an --autoall load would skip)
        node.exec_(['ipsec', 'addconn', '--ctlsocket', node.ctlsocket,
                    '--config', '/etc/ipsec.d/tripleo-vip-%s.conf'
                    % holder.vip, holder.name])
        self.assertIn(holder.name, node.conns())
        net = node.lw.net()
        before = self.serials()
        again = self.deploy(self._out)
        self.assertFalse(again[node.name]['changed'], again[node.name])
        self.assertEqual(before, self.serials())
        # the holder's side is the agent's: the net stays as it was
        self.assertEqual(net, node.lw.net())

    def test_rescan_only_for_an_address_pluto_lacks(self):
        """Conns load by name, with a rescan only for a new address.

        No rescan (which rereads the secrets) for addresses pluto listens
        on; one for a network new on the node.
        """
        self.nodes.add('n0', ['192.0.2.1'])
        node = self.nodes.nodes['n0']
        lw = node.lw

        def conn(name, left, right='192.0.2.99'):
            return libreswan.split_conf(
                'conn %s\n\tleft=%s\n\tright=%s\n'
                '\tauthby=secret\n\tikev2=insist\n\ttype=transport\n'
                '\tauto=ondemand\n' % (name, left, right))

        def log_since(size):
            with open(node.log) as f:
                f.seek(size)
                return f.read()
        # pluto's own first scan may still be on its way to the log: the
        # count starts after it (under load, CI once read it as ours)
        deadline = time.monotonic() + 30
        while 'listening for IKE messages' not in log_since(0):
            self.assertLess(time.monotonic(), deadline, 'pluto never listened')
            time.sleep(0.05)
        size = os.path.getsize(node.log)
        self.assertEqual({}, lw.add(conn('known', '192.0.2.1'), ['known']))
        self.assertEqual('prospective erouted', lw.status()['known'].routing)
        self.assertNotIn('forgetting secrets', log_since(size))
        self.assertNotIn('listening for IKE messages', log_since(size))
        # a network new on the node: its address came after pluto started
        node.exec_(['ip', 'addr', 'add', '192.0.2.2/32', 'dev', 'lo'])
        self.assertNotIn('192.0.2.2', libreswan.parse_interfaces(
            lw.whack('--status').stdout))
        # the control: loaded without the rescan, the conn cannot orient
        # and pluto refuses to route it
        path = os.path.join(self.tempdir(), 'control.conf')
        with open(path, 'w') as f:
            f.write('config setup\n\n' +
                    conn('blind', '192.0.2.2')['blind'])
        node.exec_(['ipsec', 'addconn', '--ctlsocket', node.ctlsocket,
                    '--config', path, 'blind'])
        self.assertEqual('unrouted', lw.status()['blind'].routing)
        self.assertNotEqual(0, lw.whack('--route', '--name', 'blind',
                                        check=False).returncode)
        lw.delete('blind')
        size = os.path.getsize(node.log)
        self.assertEqual({}, lw.add(conn('new', '192.0.2.2'), ['new']))
        self.assertIn('listening for IKE messages', log_since(size))
        self.assertIn('192.0.2.2', libreswan.parse_interfaces(
            lw.whack('--status').stdout))
        self.assertEqual('prospective erouted', lw.status()['new'].routing)
        # a conn to an address of the node's own (a VIP it holds) cannot
        # orient: left unrouted, as the VIP's agent wants, and no failure
        self.assertEqual({}, lw.add(conn('mine', '192.0.2.1', '192.0.2.2'),
                                    ['mine']))
        self.assertEqual('unrouted', lw.status()['mine'].routing)
        # one with no end here is named as not routed
        failed = lw.add(conn('nowhere', '198.51.100.1'), ['nowhere'])
        self.assertEqual(['nowhere'], list(failed))
        self.assertIn('not routed', failed['nowhere'])
        # a conn pluto refuses is named, with addconn's reason
        bad = libreswan.split_conf('conn bad\n\tleft=192.0.2.1\n'
                                   '\tright=192.0.2.98\n\tauthby=rsasig\n'
                                   '\tleftcert=nowhere\n\tikev2=insist\n'
                                   '\tauto=ondemand\n')
        failed = lw.add(bad, ['bad'])
        self.assertEqual(['bad'], list(failed))
        self.assertNotIn('bad', lw.status())


class TestChanges(RoleTestCase):
    """Only the conns a change touches are touched."""

    def test_peer_added_then_removed(self):
        _, self._out = self.bundle(computes=2)
        self.deploy(self._out)
        before = self.serials()
        the_plan, self._out = self.bundle(computes=3)
        grown = self.deploy(self._out)
        new = 'overcloud-novacompute-2'
        for name, result in grown.items():
            if name == new:
                continue
            self.assertTrue(result['added'], name)
            self.assertTrue(all(new in c for c in result['added']), name)
            self.assertEqual(([], []), (result['replaced'],
                                        result['deleted']), name)
            now = self.serials()[name]
            for conn, serial in before[name].items():
                self.assertEqual(serial, now[conn], conn)
        self.assertLoaded(the_plan)

        before = self.serials()
        the_plan, self._out = self.bundle(computes=2)
        self.nodes.remove(new)
        shrunk = self.deploy(self._out)
        for name, result in shrunk.items():
            self.assertTrue(result['deleted'], name)
            self.assertTrue(all(new in c for c in result['deleted']), name)
            self.assertEqual(([], []), (result['added'], result['replaced']))
            now = self.serials()[name]
            for conn, serial in now.items():
                self.assertEqual(before[name][conn], serial, conn)
        self.assertLoaded(the_plan)

    def secrets_loads(self):
        """{node: how many times its pluto has read the secrets files}."""
        counts = {}
        for name, node in self.nodes.nodes.items():
            with open(node.log) as f:
                counts[name] = f.read().count(
                    'loading secrets from "/etc/ipsec.secrets"')
        return counts

    def test_key_epoch_bump_replaces_no_conn(self):
        _, self._out = self.bundle()
        self.deploy(self._out)
        before = self.serials()
        loads = self.secrets_loads()
        the_plan, self._out = self.bundle(key_epoch=1)
        bumped = self.deploy(self._out)
        for name, result in bumped.items():
            # the new keys are written and staged; no conn is touched
            self.assertEqual(([], [], []), (result['replaced'],
                                            result['added'],
                                            result['deleted']), name)
            self.assertTrue(result['staged'], name)
            self.assertTrue(any(p.endswith('.secrets')
                                for p in result['written']), name)
        self.assertEqual(before, self.serials())
        # the role's next task made every pluto reread its secrets, once
        self.assertEqual({n: c + 1 for n, c in loads.items()},
                         self.secrets_loads())
        self.assertLoaded(the_plan)
        again = self.deploy(self._out)
        self.assertFalse([h for h, r in again.items() if r['changed']])
        self.assertEqual({n: c + 1 for n, c in loads.items()},
                         self.secrets_loads())

    def test_new_proposal_replaces_every_conn(self):
        _, self._out = self.bundle()
        self.deploy(self._out)
        before = self.serials()
        the_plan, self._out = self.bundle(esp='aes_gcm128')
        changed = self.deploy(self._out)
        for name, result in changed.items():
            self.assertEqual(sorted(before[name]), result['replaced'], name)
            now = self.serials()[name]
            for conn in before[name]:
                self.assertNotEqual(before[name][conn], now[conn], conn)
        self.assertLoaded(the_plan)


class TestSafetyNet(RoleTestCase):
    """With failure policy private, no moment without pluto's policy leaks.

    A veth from one node to this test's namespace, routed to a peer: the
    node pings the peer after the pair's conn is deleted behind the role's
    back (pluto has no policy for it then): the net drops the echo request
    (XfrmOutPolBlock) and nothing arrives at the far end.  The control that
    makes this check able to fail: the same without the net
    (private-or-clear), where the request leaves in clear.
    """

    def ping(self, node, local, peer):
        """Ping PEER once from NODE: (arrived at the far end?, blocked)."""
        def counters():
            with open('/sys/class/net/tn1/statistics/rx_packets') as f:
                rx = int(f.read())
            stat = node.exec_(['cat', '/proc/net/xfrm_stat']).stdout
            return rx, int(stat.split('XfrmOutPolBlock')[1].split()[0])
        rx0, block0 = counters()
        pluto.run(['ip', 'netns', 'exec', node.netns, 'ping', '-c1', '-W1',
                   '-I', local, peer])
        rx1, block1 = counters()
        return rx1 > rx0, block1 - block0

    def priorities(self, node, local, peer):
        out = node.exec_(['ip', 'xfrm', 'policy', 'list', 'src',
                          local + '/32', 'dst', peer + '/32',
                          'dir', 'out']).stdout
        return sorted(int(p) for p in re.findall(r' priority (\d+) ', out))

    def test_net_drops_what_no_conn_covers(self):
        the_plan, self._out = self.bundle()
        self.deploy(self._out)
        self.assertLoaded(the_plan)
        node = self.nodes.nodes['overcloud-controller-0']
        conn = [c for c in the_plan.hosts[node.name].conns
                if c.kind == plan.HOST and ':' not in c.left][0]
        local, peer = conn.left, conn.right
        # pluto's policy for the pair, then the net's, lower in precedence
        first, net = self.priorities(node, local, peer)
        self.assertLess(first, net)
        self.assertEqual(names.NET_PRIORITY, net)
        for args in (['ip', 'link', 'add', 'tn0', 'type', 'veth', 'peer',
                      'name', 'tn1'],
                     ['sysctl', '-qw', 'net.ipv6.conf.tn1.disable_ipv6=1'],
                     ['ip', 'link', 'set', 'tn0', 'netns', node.netns],
                     ['ip', 'link', 'set', 'tn1', 'up']):
            result = pluto.run(args)
            self.assertEqual(0, result.returncode, result.stderr)
        self.addCleanup(pluto.run, ['ip', 'link', 'del', 'tn1'])
        for args in (['sysctl', '-qw', 'net.ipv6.conf.tn0.disable_ipv6=1'],
                     ['ip', 'link', 'set', 'tn0', 'up'],
                     ['ip', 'route', 'replace', peer + '/32', 'dev', 'tn0'],
                     ['ip', 'neigh', 'replace', peer, 'lladdr',
                      '02:00:00:00:00:01', 'dev', 'tn0']):
            node.exec_(args)
        node.lw.delete(conn.name)
        self.assertEqual([names.NET_PRIORITY],
                         self.priorities(node, local, peer))
        self.assertEqual((False, 1), self.ping(node, local, peer))
        # the control: no net (private-or-clear), the same hole leaks
        the_plan, self._out = self.bundle(failure_policy='private-or-clear')
        result = self.deploy(self._out)[node.name]
        self.assertIn('out %s -> %s' % (local, peer), result['net_removed'])
        self.assertLoaded(the_plan)
        node.lw.delete(conn.name)
        self.assertEqual([], self.priorities(node, local, peer))
        self.assertEqual((True, 0), self.ping(node, local, peer))
        # promoted: the net goes in first, then every conn is replaced
        # (its failure shunt is fixed at load in libreswan 4.x), the
        # deleted one added back (the wire: tests/test_lab_knobs.py
        # TestStagedOnTheWire)
        the_plan, self._out = self.bundle()
        result = self.deploy(self._out)[node.name]
        self.assertEqual([conn.name], result['added'])
        wanted = sorted(c.name for c in the_plan.hosts[node.name].conns
                        if c.kind != plan.VIP_HOLDER)
        self.assertEqual(sorted(set(wanted) - {conn.name}),
                         result['replaced'])
        self.assertIn('out %s -> %s' % (local, peer), result['net_added'])
        self.assertLoaded(the_plan)


class TestVerify(RoleTestCase):
    """No SA can come up here (no kernel ESP): verify must say so."""

    def test_role_verify_fails_listing_every_missing_conn(self):
        the_plan, self._out = self.bundle()
        self.deploy(self._out)
        rc, stats, data = self.nodes.playbook(
            os.path.join(nodes.TOP, 'tests', 'playbooks', 'verify.yml'),
            self._out)
        self.assertNotEqual(0, rc)
        results = [t['hosts'] for t in data['tasks']
                   if t['name'].endswith('Check every expected conn has an '
                                         'IPsec SA')][0]
        for name, result in results.items():
            wanted = sorted(c.name for c in the_plan.hosts[name].conns
                            if c.kind == plan.HOST)
            self.assertTrue(result['failed'], name)
            self.assertEqual(wanted, result['missing'], name)
            self.assertIn('%d of %d' % (len(wanted), len(wanted)),
                          result['msg'])

    def test_cli_verify(self):
        the_plan, self._out = self.bundle()
        self.deploy(self._out)
        node = self.nodes.nodes['overcloud-novacompute-0']
        result = pluto.run(['ip', 'netns', 'exec', node.netns,
                            os.path.join(os.path.dirname(sys.executable),
                                         'tripleo-ipsec'), 'verify',
                            '--ctlsocket', node.ctlsocket, '-f', 'json'])
        self.assertEqual(1, result.returncode, result.stderr)
        report = json.loads(result.stdout)
        wanted = sorted(c.name for c in the_plan.hosts[node.name].conns
                        if c.kind == plan.HOST)
        self.assertEqual(wanted, report['missing'])
        self.assertEqual(1, len(result.stderr.splitlines()), result.stderr)
        self.assertIn('no established IPsec SA', result.stderr)
        self.assertEqual([], report['net_missing'])
        # one pair's net gone (as an ipsec restart flushes it): named
        conn = [c for c in the_plan.hosts[node.name].conns
                if c.kind == plan.HOST][0]
        node.lw.net_delete(conn.right, conn.left, 'in')
        result = pluto.run(['ip', 'netns', 'exec', node.netns,
                            os.path.join(os.path.dirname(sys.executable),
                                         'tripleo-ipsec'), 'verify',
                            '--ctlsocket', node.ctlsocket, '-f', 'json'])
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertEqual(['in %s -> %s' % (conn.right, conn.left)],
                         json.loads(result.stdout)['net_missing'])
        self.assertEqual(1, len(result.stderr.splitlines()), result.stderr)
        self.assertIn('1 kernel block policies of the safety net are '
                      'missing', result.stderr)
        self.assertIn('in %s -> %s' % (conn.right, conn.left), result.stderr)


class TestStatusParsing(base.TestCase):
    """whack --status lines as libreswan 4.10 prints them."""

    STATUS = (
        '000 "tripleo-storage-a--b": 172.16.1.10...172.16.1.11; erouted; '
        'eroute owner: #4\n'
        '000 "tripleo-storage-a--b":     oriented; my_ip=unset; '
        'their_ip=unset; mycert=tripleo-ipsec-storage; my_updown=ipsec '
        '_updown;\n'
        '000 "tripleo-storage-a--b":   our auth:rsasig(RSASIG+RSASIG_v1_5), '
        'their auth:RSASIG+RSASIG_v1_5, our autheap:none, their '
        'autheap:none;\n'
        '000 "tripleo-storage-a--b":   newest IKE SA: #3; newest IPsec SA: '
        '#4; conn serial: $7;\n'
        '000 "tripleo-storage-a--c": 172.16.1.10...172.16.1.12; '
        'prospective erouted; eroute owner: #0\n'
        '000 "tripleo-storage-a--c":     oriented; my_ip=unset; '
        'their_ip=unset; my_updown=ipsec _updown;\n'
        '000 "tripleo-storage-a--c":   our auth:secret, their auth:secret, '
        'our autheap:none, their autheap:none;\n'
        '000 "tripleo-storage-a--c":   newest IKE SA: #0; newest IPsec SA: '
        '#0; conn serial: $8;\n')

    def test_established_and_not(self):
        status = libreswan.parse_status(self.STATUS)
        self.assertEqual({'routing': 'erouted', 'ike_sa': 3, 'ipsec_sa': 4,
                          'serial': 7, 'established': True, 'auth': 'rsasig',
                          'cert': 'tripleo-ipsec-storage'},
                         status['tripleo-storage-a--b'].to_dict())
        self.assertEqual(('secret', ''),
                         (status['tripleo-storage-a--c'].auth,
                          status['tripleo-storage-a--c'].cert))
        self.assertFalse(status['tripleo-storage-a--c'].established)
        manifest = {'host': 'a', 'conns': {'tripleo-storage-a--b': 'x',
                                           'tripleo-storage-a--c': 'y',
                                           'tripleo-vip-v-a': 'z'},
                    'vips': {'v': {'peer': ['tripleo-vip-v-a'],
                                   'holder': []}}}
        report = libreswan.verify(manifest, status)
        self.assertEqual((2, 1, ['tripleo-storage-a--c'], False),
                         (report['expected'], report['established'],
                          report['missing'], report['ok']))
        with_vips = libreswan.verify(manifest, status, vips=True)
        self.assertEqual(['tripleo-storage-a--c', 'tripleo-vip-v-a'],
                         with_vips['missing'])


class TestSteps(RoleTestCase):
    """Step 1: host-to-host conns only; step 3: the VIP conns too."""

    def test_vips_later_and_kept(self):
        the_plan, self._out = self.bundle()
        step1 = self.deploy(self._out, tripleo_ipsec_vips=False)
        for name, node in self.nodes.nodes.items():
            hosts = {c.name for c in the_plan.hosts[name].conns
                     if c.kind == plan.HOST}
            self.assertEqual(hosts, set(node.conns()), name)
            self.assertTrue(step1[name]['changed'])
            # the net covers what is loaded: no VIP yet
            self.assertEqual({(c.left, c.right, 'out')
                              for c in the_plan.hosts[name].conns
                              if c.kind == plan.HOST},
                             {k for k in node.lw.net() if k[2] == 'out'},
                             name)
        step3 = self.deploy(self._out)
        self.assertLoaded(the_plan)
        for name, result in step3.items():
            self.assertEqual([], result['written'], name)
            self.assertTrue(all(c.startswith('tripleo-vip-')
                                for c in result['added']), name)
        before = self.serials()
        rerun1 = self.deploy(self._out, tripleo_ipsec_vips=False)
        self.assertFalse([h for h, r in rerun1.items() if r['changed']])
        self.assertEqual(before, self.serials())


class TestAuthCert(RoleTestCase):
    """auth cert through the role: certmonger issues, pluto loads, renews.

    One certmonger on a private bus (tests/test_certmonger.py's recipe)
    with the lab's CA serves every node; each node's NSS database is its
    own (/etc/netns/<node>/ipsec.d, pluto's /etc/ipsec.d).
    """

    def setUp(self):
        super(TestAuthCert, self).setUp()
        from tests import test_certmonger
        why = test_certmonger.unavailable()
        if why:
            self.skipTest(why)
        from tripleo_ipsec_lab import certs as lab_certs
        here = test_certmonger._Here()
        name = 'tipsec-role-%s' % os.getpid()
        self.ca = lab_certs.LabCA(here, self.tempdir(), validity='30d')
        env = lab_certs.start_certmonger(here, name, [self.ca])
        self.addCleanup(shutil.rmtree, lab_certs.rundir(name), True)
        self.addCleanup(lab_certs.stop_certmonger, here, name)
        for key, value in env.items():
            self.useFixture(fixtures.EnvironmentVariable(key, value))
        self.cert_opts = dict(auth='cert', cert_ca=self.ca.name,
                              cert_trust=(self.ca.ca_pem,),
                              cert_domain='example.com')

    def held(self):
        """{node: {nickname: serial}} of what every pluto holds."""
        return {n: {k: c['serial'] for k, c in libreswan.parse_certs(
            node.lw.whack('--listcerts').stdout).items()}
            for n, node in self.nodes.nodes.items()}

    def issued(self):
        """{node: certificates the certificates task requested}."""
        for task in self.data['tasks']:
            if task['name'].endswith('issue and track this node\'s IPsec '
                                     'certificates'):
                return {h: r.get('requested', []) for h, r in
                        task['hosts'].items() if not r.get('skipped')}
        return {}

    def test_psk_to_cert_rerun_and_renewal(self):
        _, self._out = self.bundle(computes=1)
        self.deploy(self._out)
        self.assertEqual({}, self.issued())
        before = self.serials()
        # the certificates staged while still on psk: issued and tracked,
        # no conn touched, the keys kept
        staged_opts = dict(self.cert_opts, auth='psk')
        the_plan, self._out = self.bundle(computes=1, **staged_opts)
        staged = self.deploy(self._out)
        self.assertEqual(before, self.serials())
        self.assertLoaded(the_plan)
        issued = self.issued()
        held = self.held()
        for name, host_plan in the_plan.hosts.items():
            self.assertEqual([], staged[name]['replaced'], name)
            wanted = {plan.with_cert(c, name, 'example.com').cert
                      for c in host_plan.conns}
            self.assertEqual(sorted(wanted), sorted(issued[name]), name)
            self.assertEqual(wanted, set(held[name]), name)
        # the switch: every conn replaced in place, none deleted first; the
        # certificates are there already
        the_plan, self._out = self.bundle(computes=1, **self.cert_opts)
        sizes = {n: os.path.getsize(node.log)
                 for n, node in self.nodes.nodes.items()}
        switched = self.deploy(self._out)
        self.assertEqual({n: [] for n in self.nodes.nodes}, self.issued())
        for name, result in switched.items():
            self.assertEqual(sorted(before[name]), result['replaced'], name)
            self.assertEqual([], result['deleted'], name)
            # no secrets reread in the switch: before the adds one left
            # psk conns without keys (pluto 4.10 aborted), and after them
            # one frees the private keys the cert conns sign with (#1894)
            with open(self.nodes.nodes[name].log) as f:
                f.seek(sizes[name])
                log = f.read()
            self.assertIn('added IKEv2 connection', log)
            self.assertEqual(-1, log.find('forgetting secrets'), name)
            self.assertEqual([], result['not_loaded'], name)
            self.assertTrue(result['secrets_kept'], name)
        self.assertEqual(held, self.held())
        for name, host_plan in the_plan.hosts.items():
            node = self.nodes.nodes[name]
            wanted = {c.cert for c in host_plan.conns}
            self.assertEqual(wanted, set(held[name]), name)
            loaded = node.conns()
            for conn in host_plan.conns:
                if conn.kind == plan.VIP_HOLDER:
                    continue
                self.assertEqual(('rsasig', conn.cert),
                                 (loaded[conn.name].auth,
                                  loaded[conn.name].cert), conn.name)
            # no PSK is left on disk; pluto 4.10 keeps the old ones, which
            # no conn uses, until its next start
            self.assertTrue(node.psks(), name)
            self.assertFalse([f for f in node.files()
                              if f.endswith('.secrets')], name)
        # a rerun changes nothing: the certificates are tracked already
        serials = self.serials()
        again = self.deploy(self._out)
        self.assertFalse([h for h, r in again.items() if r['changed']])
        self.assertEqual(serials, self.serials())
        self.assertEqual(held, self.held())
        # certmonger renews one node's certificate: its post-save command
        # makes that pluto reread it, and no conn is touched
        node = self.nodes.nodes['overcloud-novacompute-0']
        nick = 'tripleo-ipsec-internal_api'
        result = pluto.run(['getcert', 'resubmit', '-w', '-d', 'sql:' +
                            os.path.join(node.etc, 'ipsec.d'), '-n', nick],
                           timeout=120)
        self.assertEqual(0, result.returncode, result.stderr)
        deadline = time.monotonic() + 30
        while self.held()[node.name][nick] == held[node.name][nick]:
            self.assertLess(time.monotonic(), deadline,
                            'pluto did not reread the renewed certificate')
            time.sleep(0.5)
        self.assertEqual(serials, self.serials())
        # the old PSKs go with pluto's next start
        node.restart_pluto()
        self.assertEqual([], node.psks())

    def test_cert_without_its_ca_file_fails_before_loading(self):
        opts = dict(self.cert_opts, cert_trust=('/nonexistent/ca.pem',))
        _, self._out = self.bundle(computes=1, **opts)
        rc, stats, data = self.nodes.playbook(PLAYBOOK, self._out)
        self.assertNotEqual(0, rc)
        failed = [r for t in data['tasks'] for r in t['hosts'].values()
                  if r.get('failed')]
        self.assertTrue(failed)
        self.assertIn('/nonexistent/ca.pem', failed[0]['msg'])
        # nothing was loaded, nothing written: no conn falls back to clear
        for node in self.nodes.nodes.values():
            self.assertEqual({}, node.conns())
            self.assertEqual(set(), node.files())
