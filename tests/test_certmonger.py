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

"""The node's certificate code against a real certmonger.

A private system bus and ``certmonger -S`` on it (the lab's recipe,
``tripleo_ipsec_lab/certs.py``, here on this machine), with the lab's CA
registered as an external CA: ``certmonger.reconcile`` requests, keeps,
re-requests and forgets certificates in a real NSS database, and fails
with one line naming the certificate and the CA when the CA is unknown.
"""

import os
import shutil
import subprocess
import uuid

import fixtures

from tests import base
from tripleo_ipsec.node import certmonger
from tripleo_ipsec_lab import certs as lab_certs


class _Here(object):
    """What the lab's certs module asks of its guest, on this machine."""

    def run(self, argv, netns=None, stdin=None, timeout=120, check=True):
        result = subprocess.run(argv, input=stdin, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode:
            raise RuntimeError('%s: rc %d: %s' % (
                ' '.join(argv[:3]), result.returncode, result.stderr))
        return result


def unavailable():
    for path in (lab_certs.CERTMONGER, lab_certs.GETCERT,
                 lab_certs.DBUS_DAEMON, lab_certs.OPENSSL):
        if not os.path.exists(path):
            return '%s is not installed (tools/install)' % path
    if not shutil.which('certutil'):
        return 'certutil is not installed (libnss3-tools)'
    if os.geteuid() != 0:
        return 'certmonger on a private bus needs root here'
    return None


class TestReconcile(base.TestCase):

    def setUp(self):
        super().setUp()
        why = unavailable()
        if why:
            self.skipTest(why)
        here = _Here()
        self.name = 'tipsec-cm-%s' % uuid.uuid4().hex[:8]
        self.ca = lab_certs.LabCA(here, self.tempdir(), validity='30d')
        env = lab_certs.start_certmonger(here, self.name, [self.ca])
        self.addCleanup(shutil.rmtree, lab_certs.rundir(self.name), True)
        self.addCleanup(lab_certs.stop_certmonger, here, self.name)
        for key, value in env.items():
            self.useFixture(fixtures.EnvironmentVariable(key, value))
        self.nss = self.tempdir()
        subprocess.run(['certutil', '-N', '-d', 'sql:' + self.nss,
                        '--empty-password'], check=True, timeout=60)
        self.certs = certmonger.Certs(self.nss, timeout=120)
        self.manifest = {'host': 'overcloud-controller-0', 'certs': {
            'ca': self.ca.name, 'trust': [self.ca.ca_pem],
            'margin_days': 14, 'certs': {
                'tripleo-ipsec-internal_api': {
                    'id': 'overcloud-controller-0.internalapi.example.com',
                    'network': 'internal_api', 'vip': '', 'principal': ''},
                'tripleo-ipsec-vip-redis': {
                    'id': 'vip-redis.internalapi.example.com',
                    'network': 'internal_api', 'vip': 'redis',
                    'principal': ''}}}}
        self.ctl = '/run/pluto/pluto.ctl'

    def test_requests_keeps_and_forgets(self):
        first = certmonger.reconcile(self.certs, self.manifest, self.ctl)
        wanted = sorted(self.manifest['certs']['certs'])
        self.assertEqual(wanted, first['requested'])
        self.assertEqual(1, len(first['trusted']))
        tracked = self.certs.tracked()
        for nick in wanted:
            request = tracked[nick]
            self.assertEqual(('MONITORING', self.ca.name,
                              self.manifest['certs']['certs'][nick]['id']),
                             (request['status'], request['CA'],
                              request['dns']))
            self.assertEqual(certmonger.post_save_command(self.ctl),
                             request['post-save command'])
        # in libreswan's NSS database, with their keys, and the CA trusted
        nicks = self.certs.nicknames()
        self.assertTrue(set(wanted) <= set(nicks))
        self.assertEqual('CT,,', nicks[first['trusted'][0]])
        keys = subprocess.run(['certutil', '-K', '-d', 'sql:' + self.nss],
                              capture_output=True, text=True, timeout=60)
        for nick in wanted:
            self.assertIn(nick, keys.stdout)

        # a rerun requests nothing
        self.assertEqual({'trusted': [], 'untrusted': [], 'requested': [],
                          'forgotten': []},
                         certmonger.reconcile(self.certs, self.manifest,
                                              self.ctl))
        # a certificate the manifest drops is forgotten, in NSS too
        del self.manifest['certs']['certs']['tripleo-ipsec-vip-redis']
        third = certmonger.reconcile(self.certs, self.manifest, self.ctl)
        self.assertEqual(['tripleo-ipsec-vip-redis'], third['forgotten'])
        self.assertNotIn('tripleo-ipsec-vip-redis', self.certs.tracked())
        self.assertNotIn('tripleo-ipsec-vip-redis', self.certs.nicknames())

    def test_an_unknown_ca_fails_naming_the_certificate_and_the_ca(self):
        self.manifest['certs']['ca'] = 'no-such-ca'
        error = self.assertRaises(certmonger.CertError, certmonger.reconcile,
                                  self.certs, self.manifest, self.ctl)
        self.assertIn('no-such-ca', str(error))
        self.assertEqual(1, len(str(error).splitlines()))

    def test_check_mode_changes_nothing(self):
        result = certmonger.reconcile(self.certs, self.manifest, self.ctl,
                                      check_mode=True)
        self.assertEqual(2, len(result['requested']))
        self.assertEqual({}, self.certs.tracked())
        self.assertFalse([n for n in self.certs.nicknames()
                          if n.startswith('tripleo-ipsec')])
