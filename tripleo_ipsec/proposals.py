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

import re

from tripleo_ipsec.errors import Error

AES_KEYLENS = (128, 192, 256)
# name -> allowed key lengths (None: the name takes no key length)
AEAD = {
    'aes_gcm': AES_KEYLENS, 'aes_gcm_a': AES_KEYLENS,
    'aes_gcm_b': AES_KEYLENS, 'aes_gcm_c': AES_KEYLENS,
    'aes_gcm8': AES_KEYLENS, 'aes_gcm12': AES_KEYLENS,
    'aes_gcm16': AES_KEYLENS, 'chacha20_poly1305': None,
}
CIPHERS = {'aes': AES_KEYLENS, 'aes_cbc': AES_KEYLENS,
           'aes_ctr': AES_KEYLENS}
INTEG = {'sha2', 'sha2_256', 'sha2_384', 'sha2_512'}
PRF = INTEG
DH = {'modp2048', 'modp3072', 'modp4096', 'modp6144', 'modp8192',
      'dh14', 'dh15', 'dh16', 'dh17', 'dh18', 'dh19', 'dh20', 'dh21',
      'dh31', 'ecp_256', 'ecp_384', 'ecp_521', 'curve25519'}
NONE = {'null', 'none'}

_ENC = re.compile(r'^([a-z0-9_]+?)_?(128|192|256)?$')


def _cipher(token, kind):
    """Split 'aes_gcm256' into ('aes_gcm', 256) and check it; True if AEAD."""
    for table, aead in ((AEAD, True), (CIPHERS, False)):
        if token in table:
            return aead
        match = _ENC.match(token)
        if match and match.group(2) and match.group(1) in table:
            if table[match.group(1)] is None:
                break
            return aead
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
    aead = all(_cipher(t, kind) for t in parts[0].split('+'))
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
    for proposal in value.split(','):
        _proposal(proposal.strip(), kind)
    return value
