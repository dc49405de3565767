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

"""Rendered bundles against the real libreswan 4.10: addconn and pluto."""

import os
import re
import shutil
import subprocess

from tests import base
from tests import pluto
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import sources
from tripleo_ipsec_lab import overcloud
from tripleo_ipsec_lab import synth

FIXTURES = sorted(base.FIXTURE_FILES)


def _top_config(out, host, dest):
    """An ipsec.conf including the host's conns, as /etc/ipsec.conf does."""
    path = os.path.join(dest, '%s-ipsec.conf' % host)
    with open(path, 'w') as f:
        f.write('config setup\n\ninclude %s/%s/etc/ipsec.d/*.conf\n'
                % (out, host))
    return path


class TestCheckconfig(base.TestCase):
    """Every rendered host passes ``ipsec addconn --checkconfig``."""

    def setUp(self):
        super().setUp()
        if not shutil.which('ipsec'):
            self.skipTest('libreswan is not installed '
                          '(apt-get install libreswan)')

    def _check(self, fixture, **opts):
        the_plan = base.make_plan(base.fixture_topology(fixture), **opts)
        out, _ = self.render(the_plan)
        tmp = self.tempdir()
        for host in the_plan.hosts:
            conf = _top_config(out, host, tmp)
            result = pluto.run(['ipsec', 'addconn', '--config', conf,
                                '--checkconfig'])
            self.assertEqual(0, result.returncode,
                             '%s/%s: %s' % (fixture, host, result.stderr))
            listed = set(pluto.run(['ipsec', 'addconn', '--config', conf,
                                    '--listall']).stdout.split())
            ignored = set(pluto.run(['ipsec', 'addconn', '--config', conf,
                                     '--listignore']).stdout.split())
            manifest = base.manifest(out, host)
            shared = {n for n in listed if n.startswith('tripleo-defaults-')}
            self.assertEqual(set(manifest['conns']), listed - shared)
            # the shared sections are never loaded, nor are holder conns
            holders = {n for v in manifest['vips'].values()
                       for n in v['holder']}
            self.assertEqual(shared | holders, ignored)

    def test_stock(self):
        self._check('stock')

    def test_composable(self):
        self._check('composable')

    def test_spine_leaf(self):
        self._check('spine_leaf')

    def test_dual_stack(self):
        self._check('dual_stack')

    def test_excluded(self):
        self._check('excluded')

    def test_staged_failure_policy(self):
        self._check('stock', failure_policy='private-or-clear')

    def test_other_proposals(self):
        self._check('stock', ike='chacha20_poly1305-sha2_512-dh31',
                    esp='aes_gcm128,chacha20_poly1305')

    def test_every_network_protected(self):
        self._check('composable', skip_networks=('ctlplane',))

    def test_encapsulation_and_compress(self):
        for encapsulation in ('yes', 'no'):
            self._check('stock', encapsulation=encapsulation, compress=True)


class TestPlutoLoads(base.TestCase):
    """Every host's conns load into a real pluto, with their secrets."""

    def setUp(self):
        super().setUp()
        self.statuses = []      # every host's whack --status, loaded
        why = pluto.available()
        if why:
            self.skipTest(why)

    def _load(self, fixture, topo=None, **opts):
        topo = topo or base.fixture_topology(fixture)
        the_plan = base.make_plan(topo, **opts)
        out, _ = self.render(the_plan)
        tmp = self.tempdir()
        vips = [v.address for v in topo.vips]
        for host in topo.hosts:
            if host.name not in the_plan.hosts:
                continue
            conns = sorted(base.manifest(out, host.name)['conns'])
            addresses = sorted(set(host.addresses.values()) | set(vips))
            secrets = '%s/%s/etc/ipsec.d/*.secrets' % (out, host.name)
            scratch = pluto.ScratchPluto(addresses, secrets)
            self.addCleanup(scratch.stop)
            result = scratch.addconn(_top_config(out, host.name, tmp), conns)
            log = scratch.log_text()
            self.assertEqual(0, result.returncode,
                             '%s: %s %s' % (host.name, result.stderr, log))
            self.assertNotIn('failed to add', log)
            added = re.findall(r'"([^"]+)": added IKEv2 connection', log)
            self.assertEqual(conns, sorted(added), host.name)
            status = scratch.whack('--status').stdout
            for name in conns:
                self.assertIn('"%s":' % name, status)
            self.statuses.append(status)
            # every conn's secret parsed: pluto lists a PSK for each pair
            reread = scratch.whack('--rereadsecrets')
            self.assertNotIn('ERROR', reread.stdout + reread.stderr)
            listed = re.findall(r'PSK (\S+) (\S+)',
                                scratch.whack('--listpsks').stdout)
            wanted = {frozenset((c.left, c.right))
                      for c in the_plan.hosts[host.name].conns}
            self.assertEqual(wanted, {frozenset(p) for p in listed})
            self.assertEqual(len(wanted), len(listed))
            scratch.stop()

    def test_encapsulation_yes_and_compress(self):
        self._load('stock', encapsulation='yes', compress=True)
        policy = re.findall(r'^000 "tripleo-[^"]+":\s+policy: (\S+)',
                            '\n'.join(self.statuses), re.M)
        self.assertTrue(policy)
        self.assertEqual({True}, {'+COMPRESS+' in p for p in policy})
        encaps = re.findall(r' encaps:(\w+);', '\n'.join(self.statuses))
        self.assertEqual({'yes'}, set(encaps))
        # the control: the defaults say neither
        self.statuses = []
        self._load('stock')
        text = '\n'.join(self.statuses)
        self.assertNotIn('+COMPRESS+', text)
        self.assertEqual({'auto'}, set(re.findall(r' encaps:(\w+);', text)))

    def test_one_controller(self):
        # a VIP on a network no other node is on gets no conns (and no
        # resource): what is left loads, holder conns of the other VIPs
        # included
        topo = sources.topology_of(synth.stack_outputs(
            [synth.controller(1), synth.compute(2)]), synth.net_cidr_map())
        self.assertTrue([v for v in base.make_plan(topo).vips])
        self._load('one controller', topo)

    def test_stock(self):
        self._load('stock')

    def test_composable(self):
        self._load('composable')

    def test_spine_leaf(self):
        self._load('spine_leaf')

    def test_dual_stack(self):
        self._load('dual_stack')

    def test_excluded(self):
        self._load('excluded')


class TestServiceDropin(base.TestCase):
    """systemd reads the drop-in with libreswan's own ipsec.service.

    ``systemd-analyze verify`` on the package's unit and the drop-in
    (libreswan.service_dropin) finds nothing to say about the drop-in; a
    line it cannot parse in the same place, it names.  The drop-in's
    effect on the wire: test_lab_knobs.TestServiceStopOnTheWire.
    """

    UNIT = '/lib/systemd/system/ipsec.service'

    def setUp(self):
        super().setUp()
        if not os.path.exists(self.UNIT):
            self.skipTest('libreswan is not installed '
                          '(apt-get install libreswan)')
        if not shutil.which('systemd-analyze'):
            self.skipTest('systemd-analyze is missing '
                          '(apt-get install systemd)')

    def verify(self, extra='', groups=(), addresses=()):
        units = self.tempdir()
        shutil.copy(self.UNIT, units)
        os.mkdir(os.path.join(units, 'ipsec.service.d'))
        dropin = os.path.join(units, 'ipsec.service.d', 'tripleo-ipsec.conf')
        with open(dropin, 'w') as f:
            f.write(libreswan.service_dropin(groups, addresses) + extra)
        result = subprocess.run(
            ['systemd-analyze', 'verify',
             os.path.join(units, 'ipsec.service')],
            env=dict(os.environ, SYSTEMD_UNIT_PATH=units + ':'),
            capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr

    def test_systemd_accepts_the_drop_in(self):
        # the unit's lines are those the drop-in replaces (a libreswan
        # that changes them shows up here)
        with open(self.UNIT) as f:
            text = f.read()
        unit = overcloud.unit_lines(text, 'ExecStopPost')
        self.assertEqual(list(libreswan.UNIT_STOP_POST), unit)
        stop = overcloud.unit_lines(text, 'ExecStop')
        self.assertEqual([libreswan.UNIT_STOP], stop)
        self.assertEqual([], overcloud.unit_lines(text, 'ExecStartPost'))
        mesh = libreswan.service_dropin()
        self.assertEqual(
            ['/bin/sh -c \'test "$EXIT_STATUS" = 0 || test "$EXIT_STATUS" = '
             '12 || exec /sbin/ip -force -batch /%s\'' % names.STOP_BATCH,
             unit[1]],
            overcloud.unit_lines(mesh, 'ExecStopPost', unit))
        self.assertEqual(stop, overcloud.unit_lines(mesh, 'ExecStop', stop))
        self.assertEqual([], overcloud.unit_lines(mesh, 'ExecStartPost'))
        self.assertEqual((0, ''), self.verify())
        # mode group: pluto leaves its state; once the next one has routed
        # its group conns, the node's outbound SAs go
        groups = ['tripleo-group-storage', 'tripleo-group-internal_api']
        addresses = ['172.16.2.11', 'fd00:fd00::5']
        group = libreswan.service_dropin(groups, addresses)
        self.assertEqual([libreswan.UNIT_STOP + ' --leave-state'],
                         overcloud.unit_lines(group, 'ExecStop', stop))
        self.assertEqual(
            ['-%s --route --name tripleo-group-internal_api'
             % libreswan.WHACK,
             '-%s --route --name tripleo-group-storage' % libreswan.WHACK,
             '-/sbin/ip xfrm state deleteall src 172.16.2.11',
             '-/sbin/ip xfrm state deleteall src fd00:fd00::5'],
            overcloud.unit_lines(group, 'ExecStartPost'))
        self.assertEqual(overcloud.unit_lines(mesh, 'ExecStopPost', unit),
                         overcloud.unit_lines(group, 'ExecStopPost', unit))
        self.assertEqual((0, ''), self.verify(groups=groups,
                                              addresses=addresses))
        # the control: a line systemd cannot parse, named with its file
        _, said = self.verify('ExecStopPost=/bin/sh -c "unbalanced\n')
        self.assertIn('tripleo-ipsec.conf:', said)
        self.assertIn('Unbalanced quoting', said)
