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

"""Test CAs and certificates, put in a real NSS database with NSS's tools.

The certificates are made with ``cryptography`` (a CA, and leaves with a
DNS name, valid for as long as a test wants, expired ones included);
``pk12util`` and ``certutil`` put them where pluto reads them.
"""

import datetime
import os
import shutil
import subprocess
import tempfile

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography import x509
from cryptography.x509.oid import NameOID


def available():
    for tool in ('certutil', 'pk12util'):
        if not shutil.which(tool):
            return '%s is not installed (libnss3-tools)' % tool
    return None


def _name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


class CA(object):
    """A CA that issues leaves for DNS names."""

    def __init__(self, name='tripleo-ipsec test CA'):
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        usage = x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(name))
            .issuer_name(_name(name)).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .add_extension(usage, critical=True)
            .sign(self.key, hashes.SHA256()))

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, dns, days=365):
        """(key, cert) for DNS, valid DAYS from now (< 0: expired)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        end = now + datetime.timedelta(days=days)
        cert = (
            x509.CertificateBuilder().subject_name(_name(dns))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, end) - datetime.timedelta(days=2))
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        return key, cert


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, timeout=60, **kwargs)
    if result.returncode:
        raise RuntimeError('%s: rc %d: %s' % (' '.join(args[:2]),
                                              result.returncode,
                                              result.stderr.decode()))
    return result


def add_cert(nssdir, nick, key, cert):
    """Put a certificate and its key into NSS under NICK (pk12util)."""
    blob = pkcs12.serialize_key_and_certificates(
        nick.encode(), key, cert, None, serialization.NoEncryption())
    fd, path = tempfile.mkstemp(suffix='.p12')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(blob)
        _run(['pk12util', '-i', path, '-d', 'sql:' + nssdir, '-W', ''])
    finally:
        os.unlink(path)


def trust(nssdir, nick, ca):
    """Trust CA in NSS as a CA (what the role does with a trust file)."""
    _run(['certutil', '-A', '-d', 'sql:' + nssdir, '-n', nick, '-t', 'CT,,',
          '-a'], input=ca.pem)
