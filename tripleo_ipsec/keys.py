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

"""The master key and the per-pair keys derived from it.

One master key per deployment lives on the undercloud only.  Every pair of
addresses on a network gets its own pre-shared key::

    PSK = HKDF-SHA256(master,
                      info="tripleo-ipsec|v1|<network>|<lo>|<hi>|<epoch>")

where ``lo``/``hi`` are the pair's addresses in sorted order, so both ends
derive the same key without any per-pair state.  Bumping the epoch rotates
every key.  Nothing here logs, prints or raises with key material in it.
"""

import base64
import binascii
import os
import stat

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from tripleo_ipsec.errors import Error

MIN_MASTER_BYTES = 32
NEW_MASTER_BYTES = 64
PSK_BYTES = 48          # 64 characters once base64-encoded
INFO_PREFIX = b'tripleo-ipsec|v1|'
_SHA256 = hashes.SHA256()   # a description of the hash, no state


class MasterKey(object):
    """The deployment's master secret; its repr never shows the bytes."""

    __slots__ = ('_prk',)

    def __init__(self, secret):
        if len(secret) < MIN_MASTER_BYTES:
            raise Error('master key is too short: %d bytes, need at least %d'
                        % (len(secret), MIN_MASTER_BYTES))
        # HKDF-Extract (RFC 5869 2.2) with no salt, done once; every pair's
        # key is then one HKDF-Expand of this pseudo-random key.
        extract = hmac.HMAC(b'\0' * hashes.SHA256.digest_size,
                            hashes.SHA256())
        extract.update(bytes(secret))
        self._prk = extract.finalize()

    def __repr__(self):
        return '<MasterKey>'

    def psk(self, network, address_a, address_b, epoch):
        """The PSK of one pair on one network, as libreswan text (64 chars)."""
        # sorted as text; written out, not sorted(): render derives
        # millions of these (bench/scale.py)
        if address_b < address_a:
            address_a, address_b = address_b, address_a
        info = INFO_PREFIX + ('%s|%s|%s|%d' % (
            network, address_a, address_b, epoch)).encode('ascii')
        return binascii.b2a_base64(HKDFExpand(
            algorithm=_SHA256, length=PSK_BYTES, info=info).derive(
                self._prk), newline=False).decode('ascii')

    def psks(self, network, address, peers, epoch):
        """psk() of ADDRESS with each of PEERS, as one run of ASCII bytes.

        Each key is psk()'s 64 characters, in the order of PEERS: base64
        of 48-byte blocks needs no padding, so the run is one encoding of
        the keys' bytes.  For render's key table (millions of pairs).
        """
        head = INFO_PREFIX + network.encode('ascii') + b'|'
        tail = b'|%d' % epoch
        mine = address.encode('ascii')
        prk = self._prk
        okm = []
        for peer in peers:
            other = peer.encode('ascii')
            # sorted as text, as psk() sorts them
            info = head + (mine + b'|' + other if mine <= other
                           else other + b'|' + mine) + tail
            okm.append(HKDFExpand(algorithm=_SHA256, length=PSK_BYTES,
                                  info=info).derive(prk))
        return binascii.b2a_base64(b''.join(okm), newline=False)


def load(path):
    """Read a master key file: base64 text of at least 32 random bytes.

    Refused when missing, unreadable, not base64, short, or readable by
    group or others.
    """
    try:
        # O_NONBLOCK: a FIFO is refused below, not waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise Error('master key file %s: %s' % (path, exc.strerror))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise Error('master key file %s is not a regular file' % path)
    with os.fdopen(fd, 'rb') as f:
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise Error('master key file %s is accessible by group or others '
                        '(mode %04o); chmod 0600 it' % (path, mode & 0o7777))
        text = f.read(4096)
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise Error('master key file %s is not base64 text' % path)
    try:
        return MasterKey(secret)
    except Error as exc:
        raise Error('master key file %s: %s' % (path, exc))


def create(path):
    """Create a new master key file (0600); never overwrites one."""
    secret = os.urandom(NEW_MASTER_BYTES)
    try:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Error('master key file %s already exists; not overwriting it'
                    % path)
    except OSError as exc:
        raise Error('master key file %s: %s' % (path, exc.strerror))
    with os.fdopen(fd, 'wb') as f:
        f.write(base64.b64encode(secret) + b'\n')
    return MasterKey(secret)


def load_or_create(path):
    """The key at ``path``, created first when there is none."""
    if not os.path.exists(path):
        return create(path)
    return load(path)
