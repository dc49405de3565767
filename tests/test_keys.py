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

"""The master key file and the per-pair PSKs derived from it."""

import base64
import hashlib
import hmac
import os
import shutil
import stat
import tempfile

import testtools

from tripleo_ipsec.errors import Error
from tripleo_ipsec import keys

SECRET = bytes(range(64))
OTHER_SECRET = bytes(range(1, 65))


def hkdf_sha256(ikm, salt, info, length):
    """RFC 5869 HKDF with SHA-256, from stdlib hmac/hashlib only."""
    if not salt:
        salt = b'\0' * hashlib.sha256().digest_size
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm = b''
    block = b''
    counter = 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]),
                         hashlib.sha256).digest()
        okm += block
        counter += 1
    return prk, okm[:length]


def reference_psk(secret, network, address_a, address_b, epoch):
    low, high = sorted((address_a, address_b))
    info = ('tripleo-ipsec|v1|%s|%s|%s|%d'
            % (network, low, high, epoch)).encode('ascii')
    _, okm = hkdf_sha256(secret, b'\0' * 32, info, 48)
    return base64.b64encode(okm).decode('ascii')


class TestReferenceHKDF(testtools.TestCase):
    """The reference implementation itself, against RFC 5869 appendix A."""

    def test_rfc5869_case_1(self):
        prk, okm = hkdf_sha256(
            ikm=b'\x0b' * 22,
            salt=bytes.fromhex('000102030405060708090a0b0c'),
            info=bytes.fromhex('f0f1f2f3f4f5f6f7f8f9'),
            length=42)
        self.assertEqual(
            '077709362c2e32df0ddc3f0dc47bba63'
            '90b6c73bb50f9c3122ec844ad7c2b3e5', prk.hex())
        self.assertEqual(
            '3cb25f25faacd57a90434f64d0362f2a'
            '2d2d0a90cf1a5a4c5db02d56ecc4c5bf'
            '34007208d5b887185865', okm.hex())

    def test_rfc5869_case_3_no_salt(self):
        # empty salt means HashLen zero bytes, as keys.py uses
        prk, okm = hkdf_sha256(ikm=b'\x0b' * 22, salt=b'', info=b'',
                               length=42)
        self.assertEqual(
            '19ef24a32c717b167f33a91d6f648bdf'
            '96596776afdb6377ac434c1c293ccb04', prk.hex())
        self.assertEqual(
            '8da4e775a563c18f715f802a063c5a31'
            'b8a11f5c5ee1879ec3454e5f3c738d2d'
            '9d201395faa4b61a96c8', okm.hex())
        self.assertEqual((prk, okm),
                         hkdf_sha256(b'\x0b' * 22, b'\0' * 32, b'', 42))


class TestPSK(testtools.TestCase):

    PAIRS = [
        ('internal_api', '172.16.2.10', '172.16.2.9', 0),
        ('storage', '172.16.1.20', '172.16.1.100', 3),
        ('internal_api', 'fd00:fd00:fd00:2000::10',
         'fd00:fd00:fd00:2000::9', 7),
        ('storage_mgmt', '10.0.0.1', '10.0.0.2', 123456789),
    ]

    def setUp(self):
        super().setUp()
        self.key = keys.MasterKey(SECRET)

    def test_matches_independent_hkdf(self):
        for network, a, b, epoch in self.PAIRS:
            self.assertEqual(reference_psk(SECRET, network, a, b, epoch),
                             self.key.psk(network, a, b, epoch),
                             (network, a, b, epoch))

    def test_matches_with_shortest_key(self):
        secret = b'\xa5' * keys.MIN_MASTER_BYTES
        self.assertEqual(
            reference_psk(secret, 'tenant', '10.0.0.1', '10.0.0.2', 1),
            keys.MasterKey(secret).psk('tenant', '10.0.0.1', '10.0.0.2', 1))

    def test_addresses_sorted_as_strings(self):
        # '172.16.2.10' < '172.16.2.9' as strings, not as addresses
        info = b'tripleo-ipsec|v1|internal_api|172.16.2.10|172.16.2.9|0'
        _, okm = hkdf_sha256(SECRET, b'', info, 48)
        self.assertEqual(base64.b64encode(okm).decode('ascii'),
                         self.key.psk('internal_api', '172.16.2.9',
                                      '172.16.2.10', 0))

    def test_a_run_of_keys_is_each_pairs_key(self):
        # render's key table: one address with many peers at once, each
        # pair's key as psk() gives it (either order of the pair), in the
        # peers' order, 64 characters each
        peers = ['172.16.2.9', '172.16.2.10', '172.16.2.100', '172.16.2.1',
                 '172.16.2.11']
        for network, epoch in (('internal_api', 0), ('storage', 7)):
            run = self.key.psks(network, '172.16.2.10', peers, epoch)
            self.assertEqual(''.join(self.key.psk(network, '172.16.2.10', p,
                                                  epoch) for p in peers),
                             run.decode('ascii'))
        six = ['fd00::1', 'fd00::a', 'fd00::10']
        self.assertEqual(
            ''.join(reference_psk(SECRET, 'storage', 'fd00::2', p, 3)
                    for p in six),
            self.key.psks('storage', 'fd00::2', six, 3).decode('ascii'))
        self.assertEqual(b'', self.key.psks('storage', 'fd00::2', [], 3))

    def test_symmetric(self):
        for network, a, b, epoch in self.PAIRS:
            self.assertEqual(self.key.psk(network, a, b, epoch),
                             self.key.psk(network, b, a, epoch))

    def test_differs_by_network(self):
        self.assertNotEqual(
            self.key.psk('internal_api', '10.0.0.1', '10.0.0.2', 0),
            self.key.psk('storage', '10.0.0.1', '10.0.0.2', 0))

    def test_differs_by_epoch(self):
        psks = {self.key.psk('storage', '10.0.0.1', '10.0.0.2', epoch)
                for epoch in range(5)}
        self.assertEqual(5, len(psks))

    def test_differs_by_master_key(self):
        other = keys.MasterKey(OTHER_SECRET)
        self.assertNotEqual(
            self.key.psk('storage', '10.0.0.1', '10.0.0.2', 0),
            other.psk('storage', '10.0.0.1', '10.0.0.2', 0))

    def test_differs_by_pair(self):
        self.assertNotEqual(
            self.key.psk('storage', '10.0.0.1', '10.0.0.2', 0),
            self.key.psk('storage', '10.0.0.1', '10.0.0.3', 0))

    def test_64_chars_of_base64(self):
        for network, a, b, epoch in self.PAIRS:
            psk = self.key.psk(network, a, b, epoch)
            self.assertEqual(64, len(psk))
            self.assertEqual(48, len(base64.b64decode(psk, validate=True)))

    def test_short_secret_refused(self):
        exc = self.assertRaises(Error, keys.MasterKey,
                                b'\x01' * (keys.MIN_MASTER_BYTES - 1))
        self.assertIn('too short', str(exc))

    def test_repr_hides_bytes(self):
        key = keys.MasterKey(SECRET)
        for text in (repr(key), str(key), '%s %r' % (key, key)):
            self.assertEqual('<MasterKey>', text.split()[0])
            self.assertNotIn(SECRET.hex(), text)
            self.assertNotIn(base64.b64encode(SECRET).decode(), text)
            self.assertNotIn(repr(SECRET), text)
            self.assertNotIn(repr(key._prk), text)
            self.assertNotIn(key._prk.hex(), text)
        self.assertFalse(hasattr(key, '__dict__'))


class TestKeyFile(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='tripleo-ipsec-test-keys-')
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def _write(self, name, content, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, 'wb') as f:
            f.write(content)
        os.chmod(path, mode)
        return path

    def _assert_refused(self, path, secret_texts):
        exc = self.assertRaises(Error, keys.load, path)
        message = str(exc)
        self.assertIn(path, message)
        self.assertNotIn('\n', message)
        for text in secret_texts:
            self.assertNotIn(text, message)
        return message

    def test_load_good(self):
        path = self._write('master.key', base64.b64encode(SECRET) + b'\n')
        self.assertEqual(
            keys.MasterKey(SECRET).psk('storage', 'a', 'b', 0),
            keys.load(path).psk('storage', 'a', 'b', 0))

    def test_load_missing(self):
        path = os.path.join(self.dir, 'absent.key')
        message = self._assert_refused(path, [])
        self.assertFalse(os.path.exists(path))
        self.assertIn('No such file', message)

    def test_load_group_readable(self):
        text = base64.b64encode(SECRET)
        path = self._write('master.key', text, 0o640)
        message = self._assert_refused(path, [text.decode()])
        self.assertIn('0640', message)

    def test_load_world_readable(self):
        text = base64.b64encode(SECRET)
        path = self._write('master.key', text, 0o604)
        message = self._assert_refused(path, [text.decode()])
        self.assertIn('0604', message)

    def test_load_not_base64(self):
        text = 'this-is-not-base64 but it is the secret: hunter2!'
        path = self._write('master.key', text.encode())
        message = self._assert_refused(path, [text, 'hunter2'])
        self.assertIn('base64', message)

    def test_load_binary(self):
        content = b'\xff\xfe' + SECRET
        path = self._write('master.key', content)
        self._assert_refused(path, [repr(content), SECRET.hex()])

    def test_load_short(self):
        short = b'sixteen-secret!!'
        text = base64.b64encode(short).decode()
        path = self._write('master.key', text.encode())
        message = self._assert_refused(path, [text, short.decode()])
        self.assertIn('too short', message)
        self.assertIn('16 bytes', message)

    def test_load_empty(self):
        path = self._write('master.key', b'')
        self._assert_refused(path, [])

    def test_create_mode_0600(self):
        path = os.path.join(self.dir, 'master.key')
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        keys.create(path)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))

    def test_create_then_load(self):
        path = os.path.join(self.dir, 'master.key')
        created = keys.create(path)
        with open(path, 'rb') as f:
            secret = base64.b64decode(f.read().strip(), validate=True)
        self.assertGreaterEqual(len(secret), keys.MIN_MASTER_BYTES)
        loaded = keys.load(path)
        self.assertEqual(created.psk('storage', 'a', 'b', 1),
                         loaded.psk('storage', 'a', 'b', 1))
        self.assertEqual(reference_psk(secret, 'storage', 'a', 'b', 1),
                         loaded.psk('storage', 'a', 'b', 1))

    def test_create_new_keys_differ(self):
        one = keys.create(os.path.join(self.dir, 'one.key'))
        two = keys.create(os.path.join(self.dir, 'two.key'))
        self.assertNotEqual(one.psk('storage', 'a', 'b', 0),
                            two.psk('storage', 'a', 'b', 0))

    def test_create_never_overwrites(self):
        text = base64.b64encode(SECRET) + b'\n'
        path = self._write('master.key', text)
        exc = self.assertRaises(Error, keys.create, path)
        self.assertIn(path, str(exc))
        self.assertNotIn(text.decode().strip(), str(exc))
        with open(path, 'rb') as f:
            self.assertEqual(text, f.read())
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))

    def test_create_makes_a_private_directory(self):
        path = os.path.join(self.dir, 'absent', 'master.key')
        keys.create(path)
        self.assertEqual(0o700, stat.S_IMODE(os.stat(
            os.path.dirname(path)).st_mode))
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))

    def test_create_where_it_cannot(self):
        blocker = os.path.join(self.dir, 'file')
        with open(blocker, 'w') as f:
            f.write('x')
        path = os.path.join(blocker, 'master.key')
        exc = self.assertRaises(Error, keys.create, path)
        self.assertIn(path, str(exc))

    def test_load_or_create(self):
        path = os.path.join(self.dir, 'master.key')
        first = keys.load_or_create(path)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))
        with open(path, 'rb') as f:
            content = f.read()
        second = keys.load_or_create(path)
        with open(path, 'rb') as f:
            self.assertEqual(content, f.read())
        self.assertEqual(first.psk('storage', '10.0.0.1', '10.0.0.2', 0),
                         second.psk('storage', '10.0.0.1', '10.0.0.2', 0))

    def test_load_or_create_keeps_existing(self):
        path = self._write('master.key', base64.b64encode(SECRET))
        key = keys.load_or_create(path)
        self.assertEqual(keys.MasterKey(SECRET).psk('storage', 'a', 'b', 0),
                         key.psk('storage', 'a', 'b', 0))

    def test_load_or_create_refuses_bad_existing(self):
        text = base64.b64encode(SECRET)
        path = self._write('master.key', text, 0o644)
        exc = self.assertRaises(Error, keys.load_or_create, path)
        self.assertNotIn(text.decode(), str(exc))
        with open(path, 'rb') as f:
            self.assertEqual(text, f.read())
