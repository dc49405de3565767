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

"""IpsecMode group: the plan, real plutos loading it, and the wire.

A group conn per protected network (libreswan's opportunistic policy
groups over the network's subnets), one key line per peer; the VIPs keep
their own conns.
"""

import ipaddress
import json
import os
import re
import tempfile
import time

from testtools import content

from tests import base
from tests import pluto
from tests import test_certs
from tests import test_lab_knobs as knobs
from tripleo_ipsec import errors
from tripleo_ipsec import keys
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec.node import wire
from tripleo_ipsec import plan
from tripleo_ipsec import render
from tripleo_ipsec import sources
from tripleo_ipsec_lab import outage
from tripleo_ipsec_lab import overcloud
from tripleo_ipsec_lab import synth


def stock(computes=4, **opts):
    """The plan of a synthetic cloud with its subnets (3 controllers)."""
    topo = sources.topology_of(synth.stack_outputs(
        [synth.controller(3), synth.compute(computes)]),
        synth.net_cidr_map())
    return topo, base.make_plan(topo, **opts)


class TestGroupPlan(base.TestCase):

    def test_auto_picks_group_over_the_conn_budget(self):
        # 3 controllers + 4 computes: a controller's mesh holds its peers
        # on every network plus its VIP conns
        _, mesh = stock()
        worst = max(mesh.load.values(), key=lambda load: load['child_sas'])
        budget = worst['child_sas']
        self.assertEqual('mesh', mesh.mode)
        self.assertIn('within the conn budget of 500', mesh.mode_reason)
        _, at = stock(conn_budget=budget)
        self.assertEqual('mesh', at.mode)
        # past it, group
        _, over = stock(conn_budget=budget - 1)
        self.assertEqual('group', over.mode)
        self.assertRegex(over.mode_reason, r'^auto: overcloud-\S+ would '
                         r'carry %d SAs in a mesh, over the conn budget of '
                         r'%d$' % (budget, budget - 1))
        self.assertEqual([], over.over_budget())
        _, never = stock(conn_budget=0)
        self.assertEqual('mesh', never.mode)
        _, forced = stock(mode='mesh', conn_budget=1)
        self.assertEqual(('mesh', 'IpsecMode mesh'),
                         (forced.mode, forced.mode_reason))
        self.assertTrue(forced.over_budget())
        self.assertEqual('group', over.to_dict()['summary']['mode'])

    def test_auto_stays_mesh_without_subnets(self):
        # the same cloud, net_cidr_map unknown: a group conn would cover
        # nothing, so auto stays mesh and says why
        the_plan = base.make_plan(base.fixture_topology('stock'),
                                  conn_budget=1)
        self.assertEqual('mesh', the_plan.mode)
        self.assertIn('but network internal_api, storage, storage_mgmt has '
                      'no subnet in net_cidr_map', the_plan.mode_reason)
        self.assertTrue(the_plan.over_budget())

    def test_group_conns_subnets_and_keys(self):
        topo, the_plan = stock(mode='group')
        self.assertEqual('group', the_plan.mode)
        host = 'overcloud-novacompute-0'
        mine = the_plan.hosts[host]
        # no host-to-host conn: one group per protected network it is on
        self.assertEqual([], [c for c in mine.conns if c.kind == plan.HOST])
        self.assertEqual(
            [('tripleo-group-internal_api', 'internal_api'),
             ('tripleo-group-storage', 'storage')],
            [(g.name, g.network) for g in mine.groups])
        for group in mine.groups:
            # the network's subnets less its VIPs (their own conns): every
            # other address of the subnet, none of the VIPs
            vips = {ipaddress.ip_address(v.address) for v in topo.vips
                    if v.network == group.network}
            self.assertTrue(vips)
            covered = [ipaddress.ip_network(c) for c in group.subnets]
            subnet = ipaddress.ip_network(
                synth.net_cidr_map()[group.network][0])
            self.assertEqual(subnet.num_addresses - len(vips),
                             sum(c.num_addresses for c in covered))
            self.assertTrue(all(c.subnet_of(subnet) for c in covered))
            self.assertFalse([v for v in vips for c in covered if v in c])
            self.assertEqual(
                len(topo.members(group.network)) - 1, group.peers)
        # the VIPs keep their conns
        self.assertTrue([c for c in mine.conns if c.kind == plan.VIP_PEER])
        key = keys.MasterKey(b'k' * 32)
        files = render.host_files(the_plan, host, key)
        conf = files[names.network_conf('internal_api')][0]
        self.assertIn('right=%opportunisticgroup', conf)
        self.assertEqual(1, conf.count('\nconn tripleo-group-'))
        self.assertEqual(
            (''.join('%s\n' % c for c in mine.groups[0].subnets), 0o644),
            files[names.group_policy('internal_api')])
        secrets, mode = files[names.network_secrets('internal_api')]
        self.assertEqual(0o600, mode)
        lines = re.findall(r'^(\S+) (\S+) : PSK "(\S+)"$', secrets, re.M)
        me = mine.groups[0].left
        peers = {h.addresses['internal_api']
                 for h in topo.members('internal_api') if h.name != host}
        self.assertEqual(peers, {right for left, right, _ in lines})
        self.assertEqual({me}, {left for left, _, _ in lines})
        # the same key as the pair's mesh conn, on both ends
        for left, right, psk in lines:
            self.assertEqual(key.psk('internal_api', left, right, 0), psk)
        manifest = json.loads(files[names.MANIFEST][0])
        self.assertEqual({'internal_api': 'tripleo-group-internal_api',
                          'storage': 'tripleo-group-storage'},
                         manifest['groups'])
        self.assertEqual(render.GROUP_ACQUIRE_EXPIRES,
                         manifest['acquire_expires'])
        for subnet in mine.groups[0].subnets:
            self.assertEqual([me, subnet], manifest['net'][
                'tripleo-group-internal_api#%s' % subnet])
        libreswan.parse_manifest(files[names.MANIFEST][0])
        # what the ipsec service's drop-in needs: the node's addresses on
        # its group conns' networks (not the VIPs' conns')
        self.assertEqual(sorted(g.left for g in mine.groups),
                         libreswan.group_addresses(manifest))
        self.assertTrue([c for c in manifest['conns']
                         if c not in manifest['groups'].values()])

    def test_a_subnet_change_replaces_the_group_conn(self):
        topo, the_plan = stock(mode='group')
        key = keys.MasterKey(b'k' * 32)
        before = json.loads(render.host_files(
            the_plan, 'overcloud-novacompute-0', key)[names.MANIFEST][0])
        cidrs = synth.net_cidr_map()
        cidrs['internal_api'].append('172.31.0.0/24')
        wider = base.make_plan(sources.topology_of(synth.stack_outputs(
            [synth.controller(3), synth.compute(4)]), cidrs), mode='group')
        after = json.loads(render.host_files(
            wider, 'overcloud-novacompute-0', key)[names.MANIFEST][0])
        self.assertNotEqual(before['conns']['tripleo-group-internal_api'],
                            after['conns']['tripleo-group-internal_api'])
        self.assertEqual(before['conns']['tripleo-group-storage'],
                         after['conns']['tripleo-group-storage'])

    def test_a_network_without_its_subnets_is_refused(self):
        outputs = synth.stack_outputs([synth.controller(3),
                                       synth.compute(2)])
        cidrs = synth.net_cidr_map()
        del cidrs['storage']
        topo = sources.topology_of(outputs, cidrs)
        error = self.assertRaises(errors.Error, base.make_plan, topo,
                                  mode='group')
        self.assertIn('network storage has no subnet', str(error))


class TestGroupPlutoLoads(base.TestCase):
    """A real pluto 4.10 loads a node's group files; the apply code routes.

    The group's instances (one per subnet) become traps in the kernel; a
    policy file that is missing leaves none (the check can fail).
    """

    def setUp(self):
        super(TestGroupPlutoLoads, self).setUp()
        why = pluto.available()
        if why:
            self.skipTest(why)

    def _load(self, the_plan, topo, host, drop_policy=False):
        out, _ = self.render(the_plan)
        ipsec_d = os.path.join(out, host, names.IPSEC_D)
        if drop_policy:
            os.unlink(os.path.join(out, host,
                                   names.group_policy('internal_api')))
        mine = next(h for h in topo.hosts if h.name == host)
        scratch = pluto.ScratchPluto(
            sorted(set(mine.addresses.values()) |
                   {v.address for v in topo.vips}),
            ipsec_d + '/*.secrets', ipsecdir=ipsec_d)
        self.addCleanup(scratch.stop)
        sections = {}
        for path in sorted(os.listdir(ipsec_d)):
            if path.endswith('.conf'):
                with open(os.path.join(ipsec_d, path)) as f:
                    sections.update(libreswan.split_conf(f.read()))
        manifest = base.manifest(out, host)
        lw = libreswan.Libreswan(scratch.ctl, 60, (
            'ip', 'netns', 'exec', scratch.netns, 'ipsec'))
        wanted = [n for n in manifest['conns']
                  if n not in libreswan.holder_conns(manifest)]
        failed = lw.add(sections, wanted)
        return scratch, lw, manifest, failed

    def test_group_files_load_and_route(self):
        topo, the_plan = stock(mode='group')
        host = 'overcloud-novacompute-0'
        scratch, lw, manifest, failed = self._load(the_plan, topo, host)
        self.assertEqual({}, failed)
        log = scratch.log_text()
        for net in ('internal_api', 'storage'):
            self.assertRegex(log, r'loading group "\S+/%s"'
                             % names.group_conn(net))
        status = lw.status()
        report = libreswan.verify(manifest, status)
        self.assertEqual([], report['group_missing'])
        self.assertEqual({g.name: sorted(g.subnets)
                          for g in the_plan.hosts[host].groups},
                         report['groups'])
        self.assertTrue(report['ok'], report)
        # the kernel's safety net: each group's subnet from this host's
        # address, both ways (what the apply module installs); verify
        # finds it missing until it is there
        wanted = libreswan.net_wanted(manifest, manifest['conns'])
        for group in the_plan.hosts[host].groups:
            for subnet in map(libreswan._net_end, group.subnets):
                self.assertIn((group.left, subnet, 'out'), wanted)
                self.assertIn((subnet, group.left, 'in'), wanted)
        report = libreswan.verify(manifest, status, net=lw.net())
        self.assertFalse(report['ok'])
        self.assertIn('out %s -> %s' % (
            the_plan.hosts[host].groups[0].left,
            the_plan.hosts[host].groups[0].subnets[0]),
            report['net_missing'])
        for src, dst, direction in sorted(wanted):
            lw.net_add(src, dst, direction)
        self.assertEqual(wanted, lw.net())
        report = libreswan.verify(manifest, status, net=lw.net())
        self.assertEqual([], report['net_missing'])
        self.assertTrue(report['ok'], report)
        # the traps: from this host's address to each subnet
        policies = lw.ip('xfrm', 'policy').stdout
        for group in the_plan.hosts[host].groups:
            self.assertIn('src %s/32 dst %s' % (group.left,
                                                group.subnets[0]), policies)
        # one key per peer of each network, and the VIPs'
        psks = re.findall(r'PSK (\S+) (\S+)', lw.whack('--listpsks').stdout)
        peers = sum(g.peers for g in the_plan.hosts[host].groups)
        vip_conns = len(the_plan.hosts[host].conns)
        self.assertEqual(peers + vip_conns, len(psks))
        # instances are pluto's own, never taken for a conn of ours
        self.assertTrue([n for n in status if '#' in n])
        self.assertFalse([n for n in status if '#' in n and names.ours(n)])

    def test_a_missing_policy_file_is_found(self):
        topo, the_plan = stock(mode='group')
        host = 'overcloud-novacompute-0'
        scratch, lw, manifest, failed = self._load(the_plan, topo, host,
                                                   drop_policy=True)
        self.assertEqual({'tripleo-group-internal_api':
                          'no subnet of its policy file routed'}, failed)
        report = libreswan.verify(manifest, lw.status())
        self.assertEqual(['tripleo-group-internal_api'],
                         report['group_missing'])
        self.assertFalse(report['ok'])
        self.assertIn('1 group conns have no subnet routed',
                      libreswan.missing_message(report))


class TestGroupCertsLoad(test_certs.CertPlutoCase):
    """Mode group with auth cert, in a real pluto 4.10.

    The group conn signs with the node's certificate on its network and
    takes any certificate of the CA; with them in NSS it loads and routes.
    """

    def setUp(self):
        super(TestGroupCertsLoad, self).setUp()
        self.topo, self.plan = stock(mode='group', **test_certs.CERT_OPTS)
        self.out, _ = self.render(self.plan)

    def test_group_conn_with_certificates(self):
        host = 'overcloud-novacompute-0'
        scratch, manifest = self.node(host)
        ipsec_d = os.path.join(self.out, host, names.IPSEC_D)
        sections = {}
        for path in sorted(os.listdir(ipsec_d)):
            if path.endswith('.conf'):
                with open(os.path.join(ipsec_d, path)) as f:
                    sections.update(libreswan.split_conf(f.read()))
        self.assertIn('rightid=%fromcert',
                      sections[names.group_conn('internal_api')])
        lw = libreswan.Libreswan(scratch.ctl, 60, (
            'ip', 'netns', 'exec', scratch.netns, 'ipsec'))
        failed = lw.add(sections, [
            n for n in manifest['conns']
            if n not in libreswan.holder_conns(manifest)])
        self.assertEqual({}, failed, scratch.log_text()[-2000:])
        self.assertFalse([p for p in os.listdir(ipsec_d)
                          if p.endswith('.secrets')])
        report = libreswan.verify(manifest, lw.status(), False, lw.certs(),
                                  lw.ca_certs())
        self.assertTrue(report['ok'], report)
        status = lw.status()
        for group in self.plan.hosts[host].groups:
            self.assertEqual(('rsasig', names.host_cert(group.network)),
                             (status[group.name].auth,
                              status[group.name].cert))


class GroupNodes(knobs.TwoNodes):
    """TwoNodes in mode group: pluto reads the group files under its root.

    A failing test carries both plutos' logs.
    """

    def setUp(self):
        super().setUp()
        self.addOnException(self.attach_logs)

    def group_pair(self):
        """The guest, a and b of a cloud in mode group, their plutos up.

        Returns the render's output (each node's bundle, not deployed).
        """
        self.boot(synth.net_cidr_map())
        the_plan = base.make_plan(self.topo, mode='group')
        out = os.path.join(self.work, 'group')
        render.write(the_plan, self.key, out)
        self.hosts = dict(zip(self.NODES, sorted(the_plan.hosts)))
        self.address = {ns: the_plan.hosts[self.hosts[ns]].groups[0].left
                        for ns in self.NODES}
        self.bring_up()
        return out

    def pinger(self, src, dst, tag):
        """SRC pings DST every 100 ms with the marker: (pid, its log)."""
        log = os.path.join(self.work, 'ping-%s-%s.txt' % (tag, src))
        pid = self.g.spawn(['/bin/sh', '-c', 'exec ping -D -n -i 0.1 -W 1 '
                            '-p %s %s > %s' % (wire.MARKER.hex(),
                                               self.address[dst], log)],
                           netns=src)
        return pid, log

    def attach_logs(self, exc_info):
        for ns in self.NODES:
            path = os.path.join(getattr(self, 'work', ''), 'pluto-%s.log' % ns)
            if os.path.exists(path):
                with open(path, errors='replace') as f:
                    self.addDetail('pluto-' + ns, content.text_content(
                        f.read()[-20000:]))

    def start(self, ns):
        secrets = os.path.join(self.work, 'ipsec-%s.secrets' % ns)
        with open(secrets, 'w') as f:
            f.write('include %s/etc/ipsec.d/*.secrets\n' % self.roots[ns])
        ipsec_d = os.path.join(self.roots[ns], names.IPSEC_D)
        os.makedirs(ipsec_d, exist_ok=True)
        knobs.start_pluto(self.g, ns, self.empty, secrets,
                          os.path.join(self.work, 'pluto-%s.log' % ns),
                          ipsecdir=ipsec_d)
        deadline = time.monotonic() + 60
        while self.lw[ns].whack('--status', check=False).returncode:
            self.assertLess(time.monotonic(), deadline, ns)
            time.sleep(0.1)

    def fresh_plutos(self):
        """Both plutos stopped, their kernel state flushed, started again."""
        for ns in self.NODES:
            self.stop(ns)
            self.g.run(['sh', '-c', 'ip xfrm policy flush; '
                        'ip xfrm state flush'], netns=ns)
            self.start(ns)

    def deploy_one(self, out, ns):
        old = tempfile.tempdir
        tempfile.tempdir = self.work
        try:
            files = self.files(out, ns)
            manifest = [p for p in files if p.endswith('.json')][0]
            return self.apply.present(knobs.Module(), self.lw[ns],
                                      self.roots[ns], files, manifest)[1]
        finally:
            tempfile.tempdir = old


class TestGroupOnTheWire(GroupNodes):
    """Two nodes in mode group, deployed by the apply module, on the wire.

    The kernel's ACQUIRE lifetime also bounds an SPI reserved for an SA
    that is not in yet: at 3 s (what an earlier tripleo-ipsec set) an SA
    added 4 s after its SPI is refused (ESRCH), at the deploy's value it
    goes in; the deploy puts its value back over the 3 s.  The nodes'
    first packets negotiate the pair's SA (nothing crosses in clear: the
    capture); a restart of b's pluto with a Delete to a (``whack
    --shutdown`` by hand, the kernel's SAs flushed as systemd's
    ExecStopPost does) is recovered from a's pings within the ACQUIRE
    lifetime and a negotiation.
    """

    def spi_outlives(self, seconds):
        """Whether an SA goes in 4 s after its SPI was reserved.

        At ACQUIRE lifetime SECONDS: the kernel's own answer, in the guest.
        """
        self.g.run(['sysctl', '-q', '-w', '%s=%d' % (libreswan.ACQ_EXPIRES,
                                                     seconds)], netns='a')
        ids = ['src', '192.0.2.1', 'dst', '192.0.2.2', 'proto', 'esp']
        out = self.g.run(['ip', 'xfrm', 'state', 'allocspi'] + ids +
                         ['mode', 'transport', 'reqid', '7'],
                         netns='a').stdout
        spi = re.search(r'spi (0x[0-9a-f]+)', out).group(1)
        time.sleep(4)
        added = self.g.run(['ip', 'xfrm', 'state', 'update'] + ids + [
            'spi', spi, 'mode', 'transport', 'reqid', '7', 'aead',
            'rfc4106(gcm(aes))', '0x' + '11' * 36, '128'], netns='a',
            check=False)
        self.g.run(['ip', 'xfrm', 'state', 'flush'], netns='a')
        if added.returncode:
            self.assertIn('No such process', added.stderr)
        return added.returncode == 0

    def restart(self, tag, out):
        """b's pluto restarted under a's pings: seconds to steady replies."""
        log = os.path.join(self.work, 'ping-%s.txt' % tag)
        pid = self.g.spawn(['/bin/sh', '-c', 'exec ping -D -n -i 0.1 -W 1 '
                            '-p %s %s > %s' % (wire.MARKER.hex(),
                                               self.address['b'], log)],
                           netns='a')
        try:
            time.sleep(1)
            self.stop('b')
            self.g.run(['sh', '-c', 'ip xfrm policy flush; '
                        'ip xfrm state flush'], netns='b')
            time.sleep(2)
            started = time.time()
            self.start('b')
            self.deploy_one(out, 'b')
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with open(log) as f:
                    at = outage.steady(outage.replies(f.read()), started)
                if at:
                    return round(at - started, 1)
                time.sleep(0.3)
            return None
        finally:
            self.g.signal(pid, 2)
            self.g.wait(pid)

    def test_first_packets_and_a_restart(self):
        out = self.group_pair()
        g = self.g
        # an SPI lives as long as the kernel's ACQUIRE state
        self.assertFalse(self.spi_outlives(3))
        self.assertTrue(self.spi_outlives(render.GROUP_ACQUIRE_EXPIRES))
        for ns in self.NODES:
            g.run(['sysctl', '-q', '-w', '%s=3' % libreswan.ACQ_EXPIRES],
                  netns=ns)
        first = self.deploy(out)
        group = names.group_conn('internal_api')
        for ns in self.NODES:
            self.assertEqual([group], first[ns]['added'], ns)
            self.assertTrue(first[ns]['acquire_expires'], ns)
            self.assertEqual(str(render.GROUP_ACQUIRE_EXPIRES), g.run(
                ['sysctl', '-n', libreswan.ACQ_EXPIRES], netns=ns)
                .stdout.strip())
            manifest = libreswan.load_manifest(os.path.join(
                self.roots[ns], names.MANIFEST))
            report = libreswan.verify(manifest, self.lw[ns].status(),
                                      net=self.lw[ns].net())
            self.assertTrue(report['ok'], report)
        # a rerun changes nothing
        self.assertEqual({ns: [] for ns in self.NODES},
                         {ns: r['added'] + r['replaced'] + r['written']
                          for ns, r in self.deploy(out).items()})

        # the first packets: held while IKE runs, then ESP; nothing in clear
        received, pcap = self.probe('first')
        deadline = time.monotonic() + 30
        while received < 5:
            self.assertLess(time.monotonic(), deadline, 'no SA on demand')
            more, pcap = self.probe('first-again')
            received = more
        self.assertEqual(0, wire.cleartext(pcap))
        self.assertEqual(0, wire.marker_hits(pcap))
        self.assertGreater(len(knobs.ip_payloads(pcap, 'esp')), 0)
        traffic = self.lw['a'].whack('--trafficstatus').stdout
        self.assertIn('"%s#%s"' % (group, synth.net_cidr_map()
                                   ['internal_api'][0]), traffic)

        # a pluto restart on b, under a's pings and a capture
        took = []
        pcap = knobs.capture(self, g, os.path.join(self.work, 'restart.pcap'),
                             lambda: took.append(self.restart('restart',
                                                              out)))
        self.assertIsNotNone(took[0], 'a never reached b again')
        self.assertLess(took[0], render.GROUP_ACQUIRE_EXPIRES + 15)
        self.assertEqual(0, wire.cleartext(pcap))
        self.assertEqual(0, wire.marker_hits(pcap))
        self.addDetail('figures', content.text_content(
            'restart of b with a Delete: a reached b again %s s after its '
            'start (ACQUIRE lifetime %d s)' % (
                took[0], render.GROUP_ACQUIRE_EXPIRES)))


class TestGroupRestartAsTheService(GroupNodes):
    """b's pluto restarted as ipsec.service does, a and b pinging each other.

    With the unit's own stop (``whack --shutdown``: a Delete to a) a
    negotiates towards b while b is down, its first packets held; once b
    is back, b's own negotiation of the pair crosses it, and libreswan
    4.10 may leave the pair behind a's failure shunt for good (the
    control: a negotiates while b is down).  The drop-in the apply module
    installs in mode group stops pluto leaving its state (no Delete: a
    keeps its SA) and, once b's next pluto has routed its group conn,
    removes b's outbound SAs: only b negotiates, a answers.  Three
    restarts: the pings are answered while b's pluto is down (the old
    SAs), every restart recovers both ways within seconds once that
    removal has run, a never negotiates on its own, nothing crosses in
    clear.
    """

    ROUNDS = 3

    def restart_as_the_service(self, tag, out, dropin, down=None):
        """b stopped and started as the service does, both pinging.

        b stays down 2 s, or until DOWN() says so (within 60 s).  Returns
        {'a -> b': seconds, 'b -> a': seconds} to steady replies after b's
        start, once its ExecStartPost has run (a missing key: none within
        30 s); the lines run; and {'a -> b': replies, 'b -> a': replies}
        while b's pluto was down.
        """
        flows = {'a -> b': self.pinger('a', 'b', tag),
                 'b -> a': self.pinger('b', 'a', tag)}
        ran = self.service_lines('b', dropin)
        took = {}
        try:
            time.sleep(1)
            overcloud.shutdown_pluto(self.g, 'b', '/run/pluto-b/pluto.ctl',
                                     ran)
            stopped = time.time()
            time.sleep(2)
            deadline = time.monotonic() + 60
            while down and not down():
                self.assertLess(time.monotonic(), deadline, 'b stays down')
                time.sleep(0.2)
            started = time.time()
            # pluto up, its conns loaded from its config (here the apply
            # module's), then the service's ExecStartPost
            self.start('b')
            self.deploy_one(out, 'b')
            self.assertEqual([], overcloud.run_unit_lines(
                self.g, 'b', ran['ExecStartPost'],
                ctlsocket='/run/pluto-b/pluto.ctl'))
            # steady from here on: the old SAs carried the traffic so far
            posted = time.time()
            deadline = time.monotonic() + 30
            while len(took) < len(flows) and time.monotonic() < deadline:
                for key, (_, log) in flows.items():
                    with open(log) as f:
                        at = outage.steady(outage.replies(f.read()),
                                           posted)
                    if at and key not in took:
                        took[key] = round(at - started, 1)
                time.sleep(0.3)
        finally:
            for pid, _ in flows.values():
                self.g.signal(pid, 2)
                self.g.wait(pid)
        answered = {}
        for key, (_, log) in flows.items():
            with open(log) as f:
                answered[key] = len([t for t in outage.replies(f.read())
                                     if stopped < t < started])
        return took, ran, answered

    def first_packets(self):
        """a's pings to b until 5 of 5 are answered (30 s at most)."""
        deadline = time.monotonic() + 30
        while self.probe('first')[0] < 5:
            self.assertLess(time.monotonic(), deadline, 'no SA on demand')

    def a_negotiated(self, since):
        """Negotiations a's pluto started on its own after offset SINCE."""
        with open(os.path.join(self.work, 'pluto-a.log')) as f:
            f.seek(since)
            return [line for line in f if 'initiate on-demand' in line]

    def test_restarts_recover_both_ways(self):
        out = self.group_pair()
        self.deploy(out)
        self.first_packets()
        log_a = os.path.join(self.work, 'pluto-a.log')

        # the control: the unit's own stop, a Delete to a; a negotiates
        # towards b while b is down (once the kernel's ACQUIRE state of its
        # last negotiation has expired, so b stays down until then)
        since = os.path.getsize(log_a)
        control, ran, _ = self.restart_as_the_service(
            'control', out, False, lambda: self.a_negotiated(since))
        self.assertEqual([libreswan.UNIT_STOP], ran['ExecStop'])
        # a clean slate (the crossing may have left the pair blocked)
        self.fresh_plutos()
        for ns in self.NODES:
            self.deploy_one(out, ns)
        self.first_packets()

        figures = []
        for i in range(self.ROUNDS):
            since = os.path.getsize(log_a)
            got = []
            pcap = knobs.capture(
                self, self.g, os.path.join(self.work, 'restart-%d.pcap' % i),
                lambda: got.append(self.restart_as_the_service(
                    'restart-%d' % i, out, True)))
            took, ran, answered = got[0]
            self.assertEqual([libreswan.UNIT_STOP + ' --leave-state'],
                             ran['ExecStop'])
            self.assertEqual(
                ['-%s --route --name %s' % (
                    libreswan.WHACK, names.group_conn('internal_api')),
                 '-/sbin/ip xfrm state deleteall src %s' % self.address['b']],
                ran['ExecStartPost'])
            figures.append((took, answered))
            # the old SAs carried both ways while b's pluto was down
            self.assertTrue(all(answered.values()), (i, answered))
            self.assertEqual({'a -> b', 'b -> a'}, set(took), (i, took))
            self.assertLess(max(took.values()), 10, (i, took))
            self.assertEqual([], self.a_negotiated(since), i)
            self.assertEqual(0, wire.cleartext(pcap), i)
            self.assertEqual(0, wire.marker_hits(pcap), i)
        self.addDetail('figures', content.text_content(
            'restarts as the service with the drop-in: (seconds to steady '
            'replies after b\'s start, replies while it was down) %r; the '
            'control (the unit\'s stop): %r' % (figures, control)))


def slow_ike(dev, auth_answers):
    """tc lines that hold DEV's IKE_SA_INIT requests back 500 ms.

    AUTH_ANSWERS: its IKE_AUTH responses too, 1.5 s.  The IKE header's
    exchange type and flags, after the IP and UDP headers (offsets 46 and
    47): IKE_SA_INIT 34, IKE_AUTH 35; 0x20 marks a response.
    """
    lines = ['tc qdisc add dev %s root handle 1: prio' % dev,
             'tc qdisc add dev %s parent 1:1 netem delay 500ms' % dev,
             'tc qdisc add dev %s parent 1:3 netem delay 1500ms' % dev]
    ike = 'protocol ip u32 match ip protocol 17 0xff match ip dport 500 0xffff'
    lines.append('tc filter add dev %s parent 1: prio 1 %s match u8 34 0xff '
                 'at 46 match u8 0 0x20 at 47 flowid 1:1' % (dev, ike))
    if auth_answers:
        lines.append('tc filter add dev %s parent 1: prio 2 %s match u8 35 '
                     '0xff at 46 match u8 0x20 0x20 at 47 flowid 1:3'
                     % (dev, ike))
    return '\n'.join(lines)


class TestGroupFirstContact(GroupNodes):
    """Two nodes' first packets to each other at the same moment.

    Both initiate, and each answers the other's negotiation.  libreswan
    4.10 drops its own, still unanswered at its first retransmit, as
    superseded once it has answered the peer's, and tells no one: the
    Child SA it answered is the newest, and the peer's traffic goes into
    it for nothing.  The lab's guest installs a responder's Child SA in
    1.1-1.7 s, over the 0.5 s libreswan waits by default; the crossing is
    made certain here with tc (each IKE_SA_INIT request 500 ms late, b's
    IKE_AUTH answers 1.5 s late).  The group conns' first retransmit at
    render.GROUP_RETRANSMIT_MS lets both answers arrive: both ways talk
    within seconds, nothing in clear.  The control, libreswan's 500 ms:
    a negotiation dropped as superseded and a way that never answers.
    """

    WATCH = 20
    LAST = 12

    def both_at_once(self, out, tag, retransmit_ms):
        """a and b ping each other from one moment; under a capture.

        Returns ({'a -> b': replies, 'b -> a': replies} in the LAST
        seconds of WATCH, the plutos' "superseded" lines, the capture).
        """
        for ns in self.NODES:
            root = os.path.join(out, self.hosts[ns])
            conf = os.path.join(root, names.IPSEC_D,
                                'tripleo-internal_api.conf')
            with open(conf) as f:
                text = f.read()
            self.assertIn('\tretransmit-interval=%d\n'
                          % render.GROUP_RETRANSMIT_MS, text)
            with open(conf, 'w') as f:
                f.write(text.replace(
                    'retransmit-interval=%d' % render.GROUP_RETRANSMIT_MS,
                    'retransmit-interval=%d' % retransmit_ms))
        logs = {ns: os.path.join(self.work, 'pluto-%s.log' % ns)
                for ns in self.NODES}
        since = {ns: os.path.getsize(log) if os.path.exists(log) else 0
                 for ns, log in logs.items()}
        self.deploy(out)
        got = {}

        def ping():
            flows = {'a -> b': self.pinger('a', 'b', tag),
                     'b -> a': self.pinger('b', 'a', tag)}
            started = time.time()
            time.sleep(self.WATCH)
            for key, (pid, log) in flows.items():
                self.g.signal(pid, 2)
                self.g.wait(pid)
                with open(log) as f:
                    got[key] = len([t for t in outage.replies(f.read())
                                    if t > started + self.WATCH - self.LAST])

        pcap = knobs.capture(self, self.g, os.path.join(
            self.work, tag + '.pcap'), ping)
        superseded = []
        for ns, log in logs.items():
            with open(log) as f:
                f.seek(since[ns])
                superseded += [line.strip() for line in f
                               if 'was superseded' in line]
        return got, superseded, pcap

    def test_crossing_first_packets_both_ways(self):
        out = self.group_pair()
        self.g.run(['sh', '-ec', slow_ike('va', False)], netns='a')
        self.g.run(['sh', '-ec', slow_ike('vb', True)], netns='b')
        got, superseded, pcap = self.both_at_once(
            out, 'first', render.GROUP_RETRANSMIT_MS)
        # at most 120 replies each way in those 12 s (about 110 here)
        self.assertGreater(min(got.values()), 80, got)
        self.assertEqual([], superseded)
        self.assertEqual(0, wire.cleartext(pcap))
        self.assertEqual(0, wire.marker_hits(pcap))

        # the control: a clean slate, then libreswan's own first retransmit
        self.fresh_plutos()
        control, superseded, pcap = self.both_at_once(out, 'control', 500)
        self.assertTrue(superseded)
        self.assertEqual(0, min(control.values()), control)
        self.assertEqual(0, wire.cleartext(pcap))
        self.addDetail('figures', content.text_content(
            'first packets both ways at once, replies in the last %d s of '
            '%d: %r with the first retransmit at %d ms; %r at 500 ms (%d '
            'negotiations dropped as superseded)' % (
                self.LAST, self.WATCH, got, render.GROUP_RETRANSMIT_MS,
                control,
                len(superseded))))
