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

"""Checks IKE and ESP proposals before anything is rendered.

libreswan's own ``ipsec algparse`` is the authority, but the undercloud need
not have libreswan installed, so this module checks the same grammar in
Python against a vetted subset of libreswan 4.x algorithm names; the tests
hold it to ``algparse``: whatever this accepts, ``algparse`` accepts too.
Weak algorithms that libreswan still knows (3DES, MD5, SHA-1, MODP-1024, NULL
encryption) are refused here by policy.

Grammar (ipsec.conf(5)): proposals separated by ``,``; a proposal is
``ENC[-INTEG|PRF[-DH]]`` where each part may list alternatives joined by
``+`` and the DH part may also follow a ``;``.
"""

from tripleo_ipsec.errors import Error

AES_KEYLENS = ('128', '192', '256')
# name -> allowed key lengths (() : the name takes no key length)
AEAD = {
    'aes_gcm': AES_KEYLENS, 'aes_gcm_a': AES_KEYLENS,
    'aes_gcm_b': AES_KEYLENS, 'aes_gcm_c': AES_KEYLENS,
    'aes_gcm_8': AES_KEYLENS, 'aes_gcm_12': AES_KEYLENS,
    'aes_gcm_16': AES_KEYLENS, 'chacha20_poly1305': (),
}
CIPHERS = {'aes': AES_KEYLENS, 'aes_cbc': AES_KEYLENS,
           'aes_ctr': AES_KEYLENS}
INTEG = {'sha2', 'sha2_256', 'sha2_384', 'sha2_512'}
PRF = INTEG
DH = {'modp2048', 'modp3072', 'modp4096', 'modp6144', 'modp8192',
      'dh14', 'dh15', 'dh16', 'dh17', 'dh18', 'dh19', 'dh20', 'dh21',
      'dh31', 'ecp_256', 'ecp_384', 'ecp_521', 'curve25519'}
NONE = {'null', 'none'}


def _spellings(table):
    """Every accepted spelling -> is it AEAD: 'aes_gcm', 'aes_gcm256', ..."""
    spelled = {}
    for name, lengths in table.items():
        spelled[name] = table is AEAD
        for length in lengths:
            # libreswan reads digits straight after a name that ends in a
            # digit as part of the key length: those need the '_'
            if not name[-1].isdigit():
                spelled[name + length] = table is AEAD
            spelled[name + '_' + length] = table is AEAD
    return spelled


_CIPHER_SPELLINGS = dict(_spellings(CIPHERS), **_spellings(AEAD))


def _cipher(token, kind):
    """True if the cipher is AEAD; Error if it is not an accepted one."""
    try:
        return _CIPHER_SPELLINGS[token]
    except KeyError:
        raise Error('%s encryption algorithm %r is not one of the accepted '
                    'ones (AES-GCM, AES-CBC/CTR, ChaCha20-Poly1305)'
                    % (kind, token))


def _alternatives(part, table, what, kind):
    if not part:
        raise Error('%s proposal has an empty %s part' % (kind, what))
    for token in part.split('+'):
        if token not in table:
            raise Error('%s %s algorithm %r is not one of %s'
                        % (kind, what, token, ', '.join(sorted(table))))


def _proposal(text, kind):
    dh = None
    if ';' in text:
        text, dh = text.split(';', 1)
        if not dh:
            raise Error('%s proposal has an empty DH part' % kind)
    parts = text.split('-')
    if not parts[0]:
        raise Error('%s proposal is empty' % kind)
    kinds = {_cipher(t, kind) for t in parts[0].split('+')}
    if len(kinds) > 1:
        raise Error('%s proposal %r mixes AEAD and non-AEAD ciphers'
                    % (kind, text))
    aead = kinds.pop()
    rest = parts[1:]
    if dh is None and len(rest) == 2:
        dh = rest.pop()
    if len(rest) > 1:
        raise Error('%s proposal %r has too many parts' % (kind, text))
    if dh is not None:
        _alternatives(dh, DH, 'DH', kind)
    if kind == 'IKE':
        if rest:
            _alternatives(rest[0], PRF, 'PRF', kind)
        return
    if rest:
        if aead:
            _alternatives(rest[0], NONE, 'integrity (AEAD takes null)', kind)
        else:
            _alternatives(rest[0], INTEG, 'integrity', kind)


def check(kind, value):
    """Raise Error unless ``value`` is a good ``ike=`` or ``esp=`` value."""
    if kind not in ('IKE', 'ESP'):
        raise ValueError(kind)
    value = (value or '').strip().lower()
    if not value:
        raise Error('%s proposal is empty' % kind)
    if any(c.isspace() for c in value):
        raise Error('%s proposal %r has white space in it' % (kind, value))
    for proposal in value.split(','):
        _proposal(proposal, kind)
    return value


# What ESP adds to a packet, as the kernel counts it (xfrm_state_mtu):
# cipher -> (IV bytes, ICV bytes or None (the integrity's), block).  ESP's
# header is 8 bytes more, its trailer 2, and the payload is padded to the
# block (4 at least).  RFC 4303, 4106 (GCM: 8-byte IV, ICV 16 unless _a/_8
# or _b/_12), 7634 (ChaCha20-Poly1305), 3602 (CBC), 3686 (CTR).
ESP_CIPHERS = {
    'aes_gcm': (8, 16, 4), 'aes_gcm_c': (8, 16, 4), 'aes_gcm_16': (8, 16, 4),
    'aes_gcm_b': (8, 12, 4), 'aes_gcm_12': (8, 12, 4),
    'aes_gcm_a': (8, 8, 4), 'aes_gcm_8': (8, 8, 4),
    'chacha20_poly1305': (8, 16, 4),
    'aes': (16, None, 16), 'aes_cbc': (16, None, 16), 'aes_ctr': (8, None, 4),
}
# integrity -> ICV bytes (HMAC truncated to half, RFC 4868)
ESP_ICV = {'sha2': 16, 'sha2_256': 16, 'sha2_384': 24, 'sha2_512': 32}
ESP_HEADER, ESP_TRAILER, UDP_ENCAP = 8, 2, 8
IP_HEADER = {4: 20, 6: 40}


def _base(token):
    """A cipher's spelling -> its name without the key length."""
    for name in sorted(ESP_CIPHERS, key=len, reverse=True):
        if token == name or (token.startswith(name) and
                             token[len(name):].lstrip('_') in AES_KEYLENS):
            return name
    raise Error('ESP encryption algorithm %r is not one of the accepted '
                'ones' % token)


def esp_shapes(esp):
    """Every (IV, ICV, block) the ``esp=`` value may negotiate."""
    shapes = set()
    for proposal in check('ESP', esp).split(','):
        parts = proposal.split(';')[0].split('-')
        integ = [t for t in (parts[1].split('+') if len(parts) > 1 else ())
                 if t in ESP_ICV] or sorted(ESP_ICV)
        for token in parts[0].split('+'):
            iv, icv, block = ESP_CIPHERS[_base(token)]
            for icv in [icv] if icv else [ESP_ICV[i] for i in integ]:
                shapes.add((iv, icv, block))
    return sorted(shapes)


def inner_mtu(esp, link_mtu, family, udp=False):
    """The largest IP packet that crosses a LINK_MTU link inside ESP.

    Transport mode, the kernel's arithmetic (net/xfrm xfrm_state_mtu):
    the smallest over every cipher and integrity ``esp`` may negotiate;
    ``udp`` adds ESP-in-UDP's 8 bytes (NAT-T).
    """
    iph = IP_HEADER[family]
    worst = None
    for iv, icv, block in esp_shapes(esp):
        header = ESP_HEADER + iv + (UDP_ENCAP if udp else 0)
        inner = ((link_mtu - header - icv - iph) & ~(block - 1)) + iph - \
            ESP_TRAILER
        worst = inner if worst is None else min(worst, inner)
    return worst
