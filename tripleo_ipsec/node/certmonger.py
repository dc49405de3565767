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

"""A node's certificates for auth cert: certmonger and libreswan's NSS db.

The one place that knows ``getcert`` and ``certutil`` (shipped to nodes as
the role's module_utils: standard library only).  Certificates are what the
manifest's ``certs`` part asks for: one per network the node protects, one
per VIP it may hold, each requested from the deployment's CA into pluto's
NSS database, as THT does for TLS everywhere, and tracked by certmonger,
whose post-save command makes pluto reread them after every renewal
(``whack --rereadcerts``: live SAs are kept, new IKE_AUTHs show the new
certificate).  Trust anchors are the CA certificates of the manifest's
``trust`` files.  Every command runs with a timeout.
"""

import base64
import hashlib
import re
import shlex
import subprocess
import time

try:
    from tripleo_ipsec.node import names
except ImportError:     # on a node, shipped as the role's module_utils
    from ansible.module_utils import tripleo_ipsec_names as names

DEFAULT_TIMEOUT = 300
_PEM = re.compile(r'-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)'
                  r'-----END CERTIFICATE-----')
_REQUEST = re.compile(r"^Request ID '([^']+)':")
_FIELD = re.compile(r'^\s+([A-Za-z][A-Za-z -]*[A-Za-z]): ?(.*)$')
_NICK = re.compile(r"nickname='([^']*)'")
_CERTUTIL_LIST = re.compile(r'^(\S.*?)\s+([A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$')


class CertError(Exception):
    pass


def parse_list(text):
    """``getcert list`` -> {nickname: {status, ca, expires, dns, ...}}."""
    requests, current = {}, None
    for line in text.splitlines():
        match = _REQUEST.match(line)
        if match:
            current = {'id': match.group(1)}
            continue
        match = _FIELD.match(line)
        if match and current is not None:
            key, value = match.group(1), match.group(2).strip()
            current[key] = value
            if key == 'certificate':
                nick = _NICK.search(value)
                if nick:
                    requests[nick.group(1)] = current
    return requests


def pem_certificates(text):
    """The DER bytes of every certificate in a PEM text."""
    return [base64.b64decode(''.join(block.split()))
            for block in _PEM.findall(text)]


def parse_certutil_list(text):
    """``certutil -L`` -> {nickname: trust flags}."""
    found = {}
    for line in text.splitlines():
        match = _CERTUTIL_LIST.match(line)
        if match and match.group(1) != 'Certificate Nickname':
            found[match.group(1).strip()] = match.group(2)
    return found


class Certs(object):
    """The certificates of one node's pluto, in one NSS database."""

    def __init__(self, nssdir, timeout=DEFAULT_TIMEOUT, getcert='getcert',
                 certutil='certutil'):
        self.nssdir = nssdir
        self.db = 'sql:%s' % nssdir
        self.timeout = timeout
        self.getcert, self.certutil = getcert, certutil

    def _run(self, args, stdin=None, check=True):
        try:
            result = subprocess.run(args, input=stdin, capture_output=True,
                                    timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise CertError('%s timed out after %d s'
                            % (' '.join(args[:2]), self.timeout))
        except OSError as exc:
            raise CertError('%s: %s' % (args[0], exc.strerror))
        out = result.stdout.decode('utf-8', 'replace')
        if check and result.returncode:
            err = (result.stderr.decode('utf-8', 'replace') or out).strip()
            raise CertError('%s: rc %d: %s' % (
                ' '.join(args[:2]), result.returncode,
                err.splitlines()[-1] if err else ''))
        return out

    # -- trust anchors ----------------------------------------------------
    def nicknames(self):
        """{nickname: trust flags} of the NSS database."""
        return parse_certutil_list(self._run(
            [self.certutil, '-L', '-d', self.db]))

    def trust(self, pem_files, check_mode=False):
        """Trust exactly the CA certificates of PEM_FILES (of ours).

        Returns (added, removed) nicknames.  A file that is missing or
        holds no certificate is an error: a node must not go on trusting
        nothing, or something else.
        """
        wanted = {}
        for path in pem_files:
            try:
                with open(path) as f:
                    text = f.read(1024 * 1024)
            except OSError as exc:
                raise CertError('CA file %s: %s' % (path, exc.strerror))
            ders = pem_certificates(text)
            if not ders:
                raise CertError('CA file %s holds no PEM certificate' % path)
            for der in ders:
                fingerprint = hashlib.sha256(der).hexdigest()
                wanted[names.trust_anchor(fingerprint)] = der
        have = {n for n in self.nicknames()
                if n.startswith(names.trust_anchor(''))}
        added = sorted(set(wanted) - have)
        removed = sorted(have - set(wanted))
        if not check_mode:
            for nick in added:
                self._run([self.certutil, '-A', '-d', self.db, '-n', nick,
                           '-t', 'CT,,'], stdin=wanted[nick])
            for nick in removed:
                self._run([self.certutil, '-D', '-d', self.db, '-n', nick])
        return added, removed

    # -- the node's own certificates --------------------------------------
    def tracked(self):
        """{nickname: request} certmonger tracks in this NSS database."""
        return parse_list(self._run([self.getcert, 'list', '-d', self.db]))

    def request(self, nick, spec, ca, post_save):
        """Have certmonger issue and track NICK (not waiting: see wait).

        ``spec`` is the manifest's entry: ``id`` (the DNS name, also the
        subject's CN: NSS gives one nickname to all certificates of one
        subject), and ``principal`` for IPA.
        """
        args = [self.getcert, 'request', '-c', ca, '-d', self.db,
                '-n', nick, '-D', spec['id'], '-N', 'CN=%s' % spec['id'],
                '-C', post_save]
        if spec.get('principal'):
            args += ['-K', spec['principal']]
        self._run(args)

    def wait(self, nicks, ca, ids):
        """Wait until certmonger has every one of NICKS issued (MONITORING).

        The requests run side by side.  One that gets stuck (the CA
        refused it, or cannot be reached), or is not issued in time, is an
        error naming the certificate, its name, the CA and its answer.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            tracked = self.tracked()
            pending = []
            for nick in nicks:
                request = tracked.get(nick) or {}
                status = request.get('status', 'not tracked')
                if status == 'MONITORING':
                    continue
                if request.get('stuck') == 'yes' or not request or \
                        time.monotonic() > deadline:
                    why = request.get('ca-error', '')
                    raise CertError('certificate %s (%s) from CA %s: %s%s'
                                    % (nick, ids[nick], ca, status,
                                       ' (%s)' % why if why else ''))
                pending.append(nick)
            if not pending:
                return
            time.sleep(0.5)

    def forget(self, nick):
        """Stop tracking NICK and delete it (and its key) from NSS."""
        self._run([self.getcert, 'stop-tracking', '-d', self.db, '-n', nick],
                  check=False)
        self._run([self.certutil, '-F', '-d', self.db, '-n', nick],
                  check=False)
        if nick in self.nicknames():
            self._run([self.certutil, '-D', '-d', self.db, '-n', nick])


def post_save_command(ctlsocket):
    """What certmonger runs after saving a renewed certificate."""
    return 'ipsec whack --ctlsocket %s --rereadcerts' % shlex.quote(ctlsocket)


def reconcile(certs, manifest, ctlsocket, check_mode=False):
    """Make the NSS database hold what a cert manifest asks for.

    Returns {trusted, untrusted, requested, forgotten}: lists of nicknames.
    Requests already tracked with the same CA and name are kept (certmonger
    renews them); one whose CA or name changed is requested again, and
    certificates of ours the manifest no longer names are forgotten.
    """
    wanted = (manifest.get('certs') or {})
    result = {'trusted': [], 'untrusted': [], 'requested': [],
              'forgotten': []}
    result['trusted'], result['untrusted'] = certs.trust(
        wanted.get('trust', []), check_mode)
    tracked = certs.tracked()
    ca = wanted.get('ca', '')
    post_save = post_save_command(ctlsocket)
    specs = wanted.get('certs') or {}
    for nick, spec in sorted(specs.items()):
        request = tracked.get(nick)
        if (request and request.get('CA') == ca and
                request.get('dns') == spec['id'] and
                request.get('status') == 'MONITORING' and
                request.get('post-save command') == post_save):
            continue
        result['requested'].append(nick)
        if check_mode:
            continue
        if request:
            certs.forget(nick)
        certs.request(nick, spec, ca, post_save)
    if result['requested'] and not check_mode:
        certs.wait(result['requested'], ca,
                   {n: specs[n]['id'] for n in result['requested']})
    ours = names.host_cert('')
    for nick in sorted(set(tracked) - set(wanted.get('certs') or {})):
        if nick.startswith(ours):
            result['forgotten'].append(nick)
            if not check_mode:
                certs.forget(nick)
    return result
