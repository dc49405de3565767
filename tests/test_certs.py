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

"""auth cert: the conns load in a real pluto with certificates from NSS, and
verify reads what pluto holds: a missing, expired, expiring or wrong-CA
certificate is named with its node, network and reason."""

import json
import os
import re
import sys
import time

from tests import base
from tests import certs
from tests import pluto
from tripleo_ipsec.errors import Error
from tripleo_ipsec.node import certmonger
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import options
from tripleo_ipsec import plan

CERT_OPTS = {'auth': 'cert', 'cert_ca': 'tripleo-ipsec-test',
             'cert_domain': 'example.com'}


class TestOptions(base.TestCase):

    def test_cert_needs_a_ca_and_trust(self):
        self.assertRaisesRegex(Error, 'needs cert_ca', options.Options,
                               auth='cert')
        self.assertRaisesRegex(Error, 'needs cert_trust', options.Options,
                               auth='cert', cert_ca='IPA', cert_trust=())
        options.Options(auth='cert', cert_ca='IPA')

    def test_hostile_values_refused(self):
        for bad in ({'cert_ca': 'IPA; rm -rf /'}, {'cert_ca': '-x'},
                    {'cert_trust': ('ca.pem',)},
                    {'cert_trust': ('/etc/ca.pem\nx',)},
                    {'cert_trust': ('/etc/$(id).pem',)},
                    {'cert_domain': 'Example..com'},
                    {'cert_domain': 'a b'}, {'auth': 'rsa'},
                    {'cert_margin_days': -1}, {'cert_margin_days': True}):
            self.assertRaises(Error, options.Options, **bad)


class TestPlan(base.TestCase):

    def test_every_conn_names_both_ids_and_its_certificate(self):
        the_plan = base.make_plan(base.fixture_topology('stock'),
                                  **CERT_OPTS)
        vips = {v.name: v for v in the_plan.vips}
        seen = set()
        for host, host_plan in the_plan.hosts.items():
            short = host.split('.')[0]
            for c in host_plan.conns:
                label = c.network.replace('_', '')
                if c.kind == plan.HOST:
                    self.assertEqual(('%s.%s.example.com' % (short, label),
                                      '%s.%s.example.com' % (c.peer, label),
                                      'tripleo-ipsec-' + c.network),
                                     (c.left_id, c.right_id, c.cert))
                elif c.kind == plan.VIP_PEER:
                    self.assertEqual('vip-%s.%s.example.com' % (
                        c.vip.replace('_', ''), label), c.right_id)
                    self.assertEqual('tripleo-ipsec-' + c.network, c.cert)
                else:
                    self.assertIn(host, vips[c.vip].holders)
                    self.assertEqual(('vip-%s.%s.example.com' % (
                        c.vip.replace('_', ''), label),
                        'tripleo-ipsec-vip-' + c.vip), (c.left_id, c.cert))
                seen.add(c.kind)
        self.assertEqual({plan.HOST, plan.VIP_PEER, plan.VIP_HOLDER}, seen)
        # both ends of a pair agree on who is who
        for host, host_plan in the_plan.hosts.items():
            for c in host_plan.conns:
                if c.kind == plan.HOST:
                    other = [o for o in the_plan.hosts[c.peer].conns
                             if o.name == c.name][0]
                    self.assertEqual((c.left_id, c.right_id),
                                     (other.right_id, other.left_id))

    def test_psk_plan_has_no_ids(self):
        the_plan = base.make_plan(base.fixture_topology('stock'))
        for host_plan in the_plan.hosts.values():
            for c in host_plan.conns:
                self.assertEqual(('', '', ''), (c.left_id, c.right_id,
                                                c.cert))

    def test_render_writes_no_secrets_and_a_certs_manifest(self):
        the_plan = base.make_plan(base.fixture_topology('stock'),
                                  cert_ca='IPA', auth='cert')
        out, _ = self.render(the_plan)
        host = 'overcloud-controller-0'
        files = base.read_tree(os.path.join(out, host))
        self.assertFalse([p for p in files if p.endswith('.secrets')])
        manifest = base.manifest(out, host)
        wanted = manifest['certs']
        self.assertEqual(('IPA', ['/etc/ipa/ca.crt'], 14),
                         (wanted['ca'], wanted['trust'],
                          wanted['margin_days']))
        nicks = {c.cert for c in the_plan.hosts[host].conns}
        self.assertEqual(nicks, set(wanted['certs']))
        for nick, spec in wanted['certs'].items():
            self.assertEqual('ipsec/' + spec['id'], spec['principal'])
        conf = files['etc/ipsec.d/tripleo-internal_api.conf']
        self.assertIn('\tauthby=rsasig\n', conf)
        self.assertNotIn('authby=secret', conf)


class CertPlutoCase(base.TestCase):

    def setUp(self):
        super().setUp()
        why = pluto.available() or certs.available()
        if why:
            self.skipTest(why)
        self.ca = certs.CA()
        self.topo = base.fixture_topology('stock')
        self.plan = base.make_plan(self.topo, **CERT_OPTS)
        self.out, _ = self.render(self.plan)

    def node(self, host, days=None, ca=None, skip=()):
        """A scratch pluto for HOST with its certificates in NSS.

        DAYS: {nickname: validity}; CA: {nickname: the CA that issues it};
        SKIP: nicknames left out.  The trust anchor comes from a PEM file
        through the role's own code (certmonger.Certs.trust).
        """
        manifest = base.manifest(self.out, host)
        hostinfo = [h for h in self.topo.hosts if h.name == host][0]
        vips = [v.address for v in self.topo.vips]
        # policies/ (mode group) where the bundle has them
        scratch = pluto.ScratchPluto(sorted(
            set(hostinfo.addresses.values()) | set(vips)),
            ipsecdir=os.path.join(self.out, host, names.IPSEC_D))
        self.addCleanup(scratch.stop)
        pem = os.path.join(scratch.dir, 'ca.pem')
        with open(pem, 'wb') as f:
            f.write(self.ca.pem)
        added, removed = certmonger.Certs(scratch.nss).trust([pem])
        self.assertEqual((1, []), (len(added), removed))
        for nick, spec in manifest['certs']['certs'].items():
            if nick in skip:
                continue
            issuer = (ca or {}).get(nick, self.ca)
            key, cert = issuer.issue(spec['id'], (days or {}).get(nick, 365))
            certs.add_cert(scratch.nss, nick, key, cert)
        return scratch, manifest

    def load(self, scratch, host, manifest):
        tmp = self.tempdir()
        top = os.path.join(tmp, 'ipsec.conf')
        with open(top, 'w') as f:
            f.write('config setup\n\ninclude %s/%s/etc/ipsec.d/*.conf\n'
                    % (self.out, host))
        return scratch.addconn(top, sorted(manifest['conns']))

    def verify(self, scratch, manifest, now=None):
        lw = libreswan.Libreswan(scratch.ctl)
        lw.ipsec = ['ip', 'netns', 'exec', scratch.netns, 'ipsec']
        return libreswan.verify(manifest, lw.status(), False, lw.certs(),
                                lw.ca_certs(), now)


class TestCertConnsLoad(CertPlutoCase):

    def test_every_conn_of_a_controller_and_a_compute_loads(self):
        for host in ('overcloud-controller-0', 'overcloud-novacompute-0'):
            scratch, manifest = self.node(host)
            result = self.load(scratch, host, manifest)
            log = scratch.log_text()
            self.assertEqual(0, result.returncode, result.stderr + log)
            self.assertNotIn('failed to add', log)
            added = re.findall(r'"([^"]+)": added IKEv2 connection', log)
            self.assertEqual(sorted(manifest['conns']), sorted(added))
            report = self.verify(scratch, manifest)
            wanted = {c.name: c.cert for c in self.plan.hosts[host].conns}
            for name, conn in report['conns'].items():
                self.assertEqual(('rsasig', wanted[name]),
                                 (conn['auth'], conn['cert']), name)
            # no SA can come up here, but every certificate is fine
            self.assertEqual([], report['cert_problems'])
            self.assertEqual(set(manifest['certs']['certs']),
                             set(report['certs']))
            for held in report['certs'].values():
                self.assertGreater(held['days_left'], 363)
                self.assertEqual('CN=' + self.ca.name, held['issuer'])
            scratch.stop()

    def test_a_conn_whose_certificate_is_missing_does_not_load(self):
        host = 'overcloud-novacompute-0'
        scratch, manifest = self.node(host, skip=[names.host_cert('storage')])
        result = self.load(scratch, host, manifest)
        self.assertNotEqual(0, result.returncode)
        report = self.verify(scratch, manifest)
        self.assertFalse(report['ok'])
        problems = report['cert_problems']
        self.assertEqual([('tripleo-ipsec-storage', 'storage')],
                         [(p['cert'], p['network']) for p in problems])
        self.assertIn('holds no certificate', problems[0]['reason'])
        # the conns of that network are not there, and neither are their
        # trap policies: on a node that never had them, that network's
        # traffic would go in clear.  The role requests the certificates
        # before it touches any conn and stops when one fails, so a node
        # keeps the conns it had (tests/test_role.py, TestAuthCert).
        loaded = libreswan.parse_status(scratch.whack('--status').stdout)
        self.assertFalse([n for n in loaded if '-storage-' in n])


class TestVerifyCertProblems(CertPlutoCase):

    def test_expired_expiring_and_wrong_ca_are_named(self):
        host = 'overcloud-controller-0'
        other = certs.CA('some other CA')
        scratch, manifest = self.node(host, days={
            names.host_cert('storage'): -1,
            names.host_cert('storage_mgmt'): 3}, ca={
            names.vip_cert('redis'): other})
        # pluto loads an expired certificate's conns too; verify is what
        # tells the operator
        self.load(scratch, host, manifest)
        report = self.verify(scratch, manifest)
        self.assertFalse(report['ok'])
        found = {(p['cert'], p['network'], p['vip']): p['reason']
                 for p in report['cert_problems']}
        self.assertEqual({('tripleo-ipsec-storage', 'storage', ''),
                          ('tripleo-ipsec-storage_mgmt', 'storage_mgmt', ''),
                          ('tripleo-ipsec-vip-redis', 'internal_api',
                           'redis')}, set(found))
        self.assertIn('expired on', found[('tripleo-ipsec-storage',
                                           'storage', '')])
        self.assertIn('within the 14-day margin',
                      found[('tripleo-ipsec-storage_mgmt', 'storage_mgmt',
                             '')])
        self.assertIn('issued by CN=some other CA, which is not a CA this '
                      'node trusts', found[('tripleo-ipsec-vip-redis',
                                            'internal_api', 'redis')])
        message = libreswan.missing_message(report)
        self.assertIn('%s: certificate tripleo-ipsec-storage on network '
                      'storage: expired' % host, message)
        self.assertIn('(VIP redis)', message)
        # the margin is the manifest's: 2 days lets the 3-day one pass,
        # and a clock 4 days on finds it expired
        manifest['certs']['margin_days'] = 2
        found = {p['cert'] for p in self.verify(
            scratch, manifest)['cert_problems']}
        self.assertNotIn('tripleo-ipsec-storage_mgmt', found)
        later = self.verify(scratch, manifest, time.time() + 4 * 86400)
        self.assertIn('expired on', [p['reason'] for p in
                                     later['cert_problems']
                                     if p['network'] == 'storage_mgmt'][0])

    def test_cli_verify_fails_with_one_line_per_problem(self):
        host = 'overcloud-novacompute-0'
        scratch, manifest = self.node(host, days={
            names.host_cert('internal_api'): -2})
        self.load(scratch, host, manifest)
        path = os.path.join(scratch.dir, 'manifest.json')
        with open(path, 'w') as f:
            json.dump(manifest, f)
        result = pluto.run(['ip', 'netns', 'exec', scratch.netns,
                            os.path.join(os.path.dirname(sys.executable),
                                         'tripleo-ipsec'), 'verify',
                            '--manifest', path,
                            '--ctlsocket', scratch.ctl, '-f', 'json'])
        self.assertEqual(1, result.returncode)
        self.assertEqual(1, len(result.stderr.strip().splitlines()),
                         result.stderr)
        self.assertIn('%s: certificate tripleo-ipsec-internal_api on network '
                      'internal_api: expired on' % host, result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual('cert', report['auth'])


class TestManifestShape(base.TestCase):

    def test_a_bad_certs_part_is_one_line(self):
        for part in (5, [], {'certs': []}, {'certs': {'x': 'y'}},
                     {'certs': {'x': {'id': 5}}}, {'trust': '/ca.pem'},
                     {'margin_days': 'x'}):
            text = json.dumps({'auth': 'cert', 'certs': part})
            self.assertRaisesRegex(libreswan.LibreswanError,
                                   r'^manifest: not a tripleo-ipsec '
                                   r'manifest \(certs\)$',
                                   libreswan.parse_manifest, text)


class TestTrust(base.TestCase):

    def setUp(self):
        super().setUp()
        why = certs.available()
        if why:
            self.skipTest(why)
        self.nss = self.tempdir()
        pluto.run(['certutil', '-N', '-d', 'sql:' + self.nss,
                   '--empty-password'], check=True)
        self.certs = certmonger.Certs(self.nss)

    def pem(self, *cas):
        path = os.path.join(self.tempdir(), 'ca.pem')
        with open(path, 'wb') as f:
            f.write(b''.join(ca.pem for ca in cas))
        return path

    def test_both_cas_while_changing_then_only_the_new_one(self):
        old, new = certs.CA('old'), certs.CA('new')
        self.assertEqual(1, len(self.certs.trust([self.pem(old)])[0]))
        self.assertEqual(([], []), self.certs.trust([self.pem(old)]))
        added, removed = self.certs.trust([self.pem(old, new)])
        self.assertEqual((1, []), (len(added), removed))
        ours = [n for n, flags in self.certs.nicknames().items()
                if n.startswith('tripleo-ipsec-ca-')]
        self.assertEqual(2, len(ours))
        self.assertTrue(all(self.certs.nicknames()[n] == 'CT,,'
                            for n in ours))
        added, removed = self.certs.trust([self.pem(new)])
        self.assertEqual(([], 1), (added, len(removed)))
        self.assertEqual(1, len([n for n in self.certs.nicknames()
                                 if n.startswith('tripleo-ipsec-ca-')]))

    def test_missing_or_empty_trust_file_is_an_error(self):
        self.assertRaisesRegex(certmonger.CertError, 'No such file',
                               self.certs.trust, ['/nonexistent/ca.pem'])
        empty = os.path.join(self.tempdir(), 'empty.pem')
        with open(empty, 'w') as f:
            f.write('not a certificate\n')
        self.assertRaisesRegex(certmonger.CertError, 'holds no PEM',
                               self.certs.trust, [empty])
