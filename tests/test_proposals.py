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

"""proposals.check held to libreswan's own ``ipsec algparse``.

Every corpus entry becomes one test, named after its kind, its index and
the proposal, and run through the real ``ipsec algparse -v2``:

* whatever ``check`` accepts, ``algparse`` accepts too;
* whatever ``algparse`` rejects, ``check`` refuses with ``Error``;
* the weak entries (and the strong ones outside our vetted subset) are
  accepted by ``algparse`` and refused by ``check``, by policy;
* every refusal is one line.

Values reach ipsec.conf verbatim (``ike={{ ike }}``), so ``algparse`` is
given exactly the corpus text.
"""

import re
import shutil
import subprocess

import testtools

from tripleo_ipsec.errors import Error
from tripleo_ipsec import proposals

GOOD = 'good'            # both accept
BAD = 'bad'              # both refuse
WEAK = 'weak'            # algparse accepts, we refuse by policy
UNVETTED = 'unvetted'    # algparse accepts, outside our vetted subset

CORPUS = [
    # IKE, good
    ('IKE', 'aes_gcm256-sha2_256-dh19', GOOD),        # the default
    ('IKE', 'aes_gcm256-sha2_256;dh19', GOOD),
    ('IKE', 'aes_gcm256;dh19', GOOD),
    ('IKE', 'aes_gcm256', GOOD),
    ('IKE', 'aes_gcm128-sha2_512-dh21', GOOD),
    ('IKE', 'aes_gcm_c256-sha2_384-dh20', GOOD),
    ('IKE', 'aes_gcm_a256-sha2_256-dh19', GOOD),
    ('IKE', 'aes_gcm256+aes_gcm128-sha2_256+sha2_512-dh19+dh20', GOOD),
    ('IKE', 'aes_gcm256-sha2_256-dh19,aes_cbc256-sha2_256-modp2048', GOOD),
    ('IKE', 'chacha20_poly1305-sha2_256-dh31', GOOD),
    ('IKE', 'chacha20_poly1305-sha2_512-curve25519', GOOD),
    ('IKE', 'aes_cbc256-sha2_256-dh14', GOOD),
    ('IKE', 'aes_ctr128-sha2_384-ecp_384', GOOD),
    ('IKE', 'aes256-sha2-modp3072', GOOD),
    ('IKE', 'aes_192-sha2_512-modp4096', GOOD),
    ('IKE', 'aes_gcm256-sha2_256-modp8192+dh15+dh16', GOOD),
    ('IKE', 'AES_GCM256-SHA2_256-DH19', GOOD),
    # IKE, bad
    ('IKE', '', BAD),
    ('IKE', 'aes_gcm256-dh19', BAD),                  # dh19 taken as PRF
    ('IKE', 'aes_gcm999-sha2_256-dh19', BAD),
    ('IKE', 'aes_gcm256--dh19', BAD),
    ('IKE', 'aes_gcm256-sha2_256-', BAD),
    ('IKE', 'aes_gcm256-sha2_256;', BAD),
    ('IKE', 'aes_gcm256-sha2_256-dh19;dh20', BAD),
    ('IKE', 'aes_gcm256-sha2_256-dh19,', BAD),
    ('IKE', 'bogus256-sha2_256-dh19', BAD),
    ('IKE', 'aes_gcm256-sha3_256-dh19', BAD),
    ('IKE', 'aes_gcm256-null-dh19', BAD),
    ('IKE', 'aes_gcm256-sha2_256-dh2', BAD),
    ('IKE', 'aes_gcm256-sha2_256-dh22', BAD),
    ('IKE', 'aes_gcm256-sha2_256-modp1024', BAD),     # not in this build
    ('IKE', 'aes_gcm256+aes_cbc256-sha2_256-dh19', BAD),  # AEAD + non-AEAD
    ('IKE', 'aes+bogus-sha2_256-dh19', BAD),
    ('IKE', 'aes_gcm8256-sha2_256-dh19', BAD),        # key length 8256
    ('IKE', 'aes_gcm256-sha2_256-dh19, aes_gcm128-sha2_256-dh19', BAD),
    ('IKE', 'aes_gcm256\n-sha2_256-dh19', BAD),
    # IKE, weak
    ('IKE', '3des-sha2_256-dh19', WEAK),
    ('IKE', 'aes-md5-dh19', WEAK),
    ('IKE', 'aes-sha1-dh19', WEAK),
    ('IKE', 'aes-sha2_256-modp1536', WEAK),
    ('IKE', 'aes-sha2_256-dh5', WEAK),
    ('IKE', 'aes-aes_xcbc-dh19', WEAK),
    ('IKE', 'aes_gcm256-sha2_256-dh19,3des-sha1-modp1536', WEAK),
    ('IKE', 'aes+3des-sha2_256-dh19', WEAK),
    # ESP, good
    ('ESP', 'aes_gcm256', GOOD),                      # the default
    ('ESP', 'aes_gcm256-null', GOOD),
    ('ESP', 'aes_gcm256-none', GOOD),
    ('ESP', 'aes_gcm128+aes_gcm256', GOOD),
    ('ESP', 'aes_gcm256,aes_gcm128', GOOD),
    ('ESP', 'aes_gcm256+chacha20_poly1305', GOOD),
    ('ESP', 'chacha20_poly1305', GOOD),
    ('ESP', 'chacha20_poly1305-null', GOOD),
    ('ESP', 'aes_gcm256;dh19', GOOD),
    ('ESP', 'aes_gcm256-null-dh19', GOOD),
    ('ESP', 'aes_gcm256-null;dh19', GOOD),
    ('ESP', 'aes_cbc256-sha2_256', GOOD),
    ('ESP', 'aes_ctr256-sha2_512', GOOD),
    ('ESP', 'aes-sha2_256+sha2_384', GOOD),
    ('ESP', 'aes128-sha2_256;dh14', GOOD),
    ('ESP', 'aes_gcm256-null,aes_cbc128-sha2_256', GOOD),
    ('ESP', 'aes', GOOD),
    # ESP, bad
    ('ESP', '', BAD),
    ('ESP', 'aes_gcm256-sha2_256', BAD),              # AEAD with integrity
    ('ESP', 'aes_gcm256-md5', BAD),
    ('ESP', 'aes-none', BAD),                         # non-AEAD without
    ('ESP', 'aes_gcm999', BAD),
    ('ESP', 'aes_gcm0', BAD),
    ('ESP', 'aes_gcm256;', BAD),
    ('ESP', 'aes_gcm256,', BAD),
    ('ESP', '+aes_gcm256', BAD),
    ('ESP', 'aes_gcm256;dh19;dh20', BAD),
    ('ESP', 'aes_xcbc', BAD),                         # not a cipher
    ('ESP', 'chacha20_poly1305256', BAD),
    ('ESP', 'aes_gcm256+aes-sha2_256', BAD),          # AEAD + non-AEAD
    ('ESP', 'aes+aes_gcm256', BAD),
    ('ESP', 'aes+bogus-sha2_256', BAD),
    ('ESP', 'aes_gcm16', BAD),                        # key length 16
    ('ESP', 'aes_gcm12_128', BAD),
    ('ESP', 'aes_gcm256\n+aes_gcm128', BAD),
    # ESP, weak
    ('ESP', '3des-sha2_256', WEAK),
    ('ESP', 'aes-md5', WEAK),
    ('ESP', 'aes-sha1', WEAK),
    ('ESP', 'null-sha2_256', WEAK),                   # NULL encryption
    ('ESP', 'null_auth_aes_gmac', WEAK),              # NULL encryption
    ('ESP', 'aes-aes_xcbc', WEAK),
    ('ESP', 'aes-sha2_256;modp1536', WEAK),
    ('ESP', 'aes_gcm256,3des-sha1', WEAK),
    ('ESP', 'aes+3des-sha2_256', WEAK),
    # strong, but outside the vetted subset
    ('ESP', 'camellia256-sha2_256', UNVETTED),
    ('ESP', 'aes_ccm256', UNVETTED),
]

ALGPARSE_TIMEOUT = 30
_SLUG = {'-': '_', '+': '_plus_', ';': '_semi_', ',': '_comma_',
         ' ': '_sp_', '\n': '_nl_'}


def _slug(value):
    text = ''.join(_SLUG.get(c, c) for c in value.lower()) or 'empty'
    return re.sub(r'[^a-z0-9_]', '_', text)


def algparse(kind, value):
    """(accepted, output) of the real ``ipsec algparse -v2 kind=value``."""
    result = subprocess.run(
        ['ipsec', 'algparse', '-v2', '%s=%s' % (kind.lower(), value)],
        capture_output=True, text=True, timeout=ALGPARSE_TIMEOUT)
    output = (result.stdout + result.stderr).strip()
    return result.returncode == 0 and 'ERROR' not in output, output


class TestAlgparse(testtools.TestCase):
    """One test per corpus entry, against libreswan's ``ipsec algparse``."""

    def setUp(self):
        super().setUp()
        if not shutil.which('ipsec'):
            self.skipTest('libreswan is not installed, so there is no '
                          '"ipsec algparse" to hold proposals.check to '
                          '(apt-get install libreswan)')

    def _ours(self, kind, value):
        """None when check accepts, else the Error's message."""
        try:
            proposals.check(kind, value)
        except Error as exc:
            message = str(exc)
            self.assertNotIn('\n', message,
                             '%s %r: refusal is not one line'
                             % (kind, value))
            self.assertTrue(message.strip(), '%s %r: empty refusal'
                            % (kind, value))
            return message
        return None

    def _check(self, kind, value, expect):
        ours = self._ours(kind, value)
        accepted, output = algparse(kind, value)
        what = '%s %r (%s): check says %s; algparse says:\n%s' % (
            kind, value, expect,
            'ok' if ours is None else repr(ours), output)
        # the contract, whatever the label
        if ours is None:
            self.assertTrue(accepted, 'check accepts what algparse '
                            'rejects: ' + what)
        if not accepted:
            self.assertIsNotNone(ours, 'algparse rejects what check '
                                 'accepts: ' + what)
        # the label
        if expect == GOOD:
            self.assertTrue(accepted, 'algparse rejects: ' + what)
            self.assertIsNone(ours, 'check refuses: ' + what)
        elif expect == BAD:
            self.assertFalse(accepted, 'algparse accepts: ' + what)
            self.assertIsNotNone(ours, 'check accepts: ' + what)
        else:
            self.assertTrue(accepted, 'algparse rejects: ' + what)
            self.assertIsNotNone(ours, 'check accepts a %s proposal: %s'
                                 % (expect, what))


def _add_tests():
    for index, (kind, value, expect) in enumerate(CORPUS):
        def test(self, kind=kind, value=value, expect=expect):
            self._check(kind, value, expect)
        test.__name__ = 'test_%s_%02d_%s_%s' % (
            kind.lower(), index, expect, _slug(value))
        test.__doc__ = '%s %r is %s' % (kind, value, expect)
        assert not hasattr(TestAlgparse, test.__name__), test.__name__
        setattr(TestAlgparse, test.__name__, test)


_add_tests()


class TestCorpus(testtools.TestCase):
    """The corpus covers what it must."""

    def test_size(self):
        self.assertGreaterEqual(len(CORPUS), 40)
        for kind in ('IKE', 'ESP'):
            for expect in (GOOD, BAD, WEAK):
                self.assertIn((kind, expect),
                              {(k, e) for k, _, e in CORPUS})

    def test_defaults_are_in(self):
        self.assertIn(('IKE', 'aes_gcm256-sha2_256-dh19', GOOD), CORPUS)
        self.assertIn(('ESP', 'aes_gcm256', GOOD), CORPUS)

    def test_no_duplicates(self):
        entries = [(k, v) for k, v, _ in CORPUS]
        self.assertEqual(len(entries), len(set(entries)))


class TestCheck(testtools.TestCase):
    """What does not need libreswan."""

    def test_kind_must_be_ike_or_esp(self):
        self.assertRaises(ValueError, proposals.check, 'AH', 'aes_gcm256')
        self.assertRaises(ValueError, proposals.check, 'esp', 'aes_gcm256')

    def test_none_is_empty(self):
        for kind in ('IKE', 'ESP'):
            exc = self.assertRaises(Error, proposals.check, kind, None)
            self.assertEqual('%s proposal is empty' % kind, str(exc))

    def test_blank_is_empty(self):
        exc = self.assertRaises(Error, proposals.check, 'ESP', ' \t ')
        self.assertEqual('ESP proposal is empty', str(exc))

    def test_returns_the_value(self):
        self.assertEqual('aes_gcm256-sha2_256-dh19',
                         proposals.check('IKE', 'aes_gcm256-sha2_256-dh19'))

    def test_refusal_names_the_token(self):
        exc = self.assertRaises(Error, proposals.check, 'ESP',
                                'aes_gcm256-sha2_256')
        self.assertIn('ESP', str(exc))
        self.assertIn("'sha2_256'", str(exc))
