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

"""The lab's one CA, and a certmonger in every node that asks it.

``LabCA(guest, work)`` makes the CA on the host with openssl (WORK/ca:
ca.key 0600, ca.pem) and a certmonger external-CA helper, WORK/ca/submit:
SUBMIT signs the CSR of CERTMONGER_CSR with ``openssl ca``, copying only
its DNS and IP subjectAltNames (not a CA:TRUE, nor any other extension it
asks for), valid for what WORK/ca/validity says (``set_validity``: 2d by
default, 3h, 10m, seconds), with a random serial; every other operation
exits 6 (unsupported).  WORK is the same path in the guest, where
certmonger runs the helper; a flock serialises openssl's index.

``start_certmonger(guest, ns, cas)`` (or ``LabCA.start_certmonger(ns)``),
once per node: a private dbus-daemon (unix:path=/run/certmonger-NS/bus,
allow-all policy) and ``certmonger -S -f`` on it, its
CERTMONGER_{REQUESTS,CAS,LOCAL_CA,TMP}_DIR under /run/certmonger-NS (the
guest's tmpfs), both through ``ip netns exec``, so certmonger's
/etc/ipsec.d is the node's; then ``getcert add-ca`` for CAS.  What the
node's commands need to reach it is ``node_env(ns)``:
{'DBUS_SYSTEM_BUS_ADDRESS': 'unix:path=/run/certmonger-NS/bus'};
``Guest.python_wrapper(ns, path, env=node_env(ns))`` hands it to the
node's Ansible modules.  ``stop_certmonger`` ends both by their pid files.

Measured in the guest (1 CPU; certmonger 0.79.17, libreswan 4.10, by
tests/test_lab_certs.py):

* certmonger answers on its bus ~7 s after it starts: it first probes its
  built-in CAs (IPA, dogtag, local; local makes its signing key).  Two
  nodes' start side by side: ~16 s.
* ``getcert request -w`` (RSA 2048 key in NSS, CSR, helper, save, -C
  post-save hook): ~5 s alone, ~12 s for two nodes side by side;
  ``getcert resubmit -w``: ~5 s, a new serial and the post-save hook
  again.
* pluto with these certificates (authby=rsasig, IKEv2) signs with
  RSASSA-PSS SHA2_512; IKE_AUTH retransmits while the guest's CPU does
  the crypto: initiate to Child SA ~4 s.

Quirks:

* NSS gives all certificates of one subject one nickname, the last one
  given: a second certificate with the subject of the first takes the
  first's nickname away, and pluto then finds no ``leftcert``.  getcert's
  default subject is CN=<hostname>, the guest's one name in every node:
  request with ``-N CN=<fqdn>``, a subject per certificate.
* getcert without its bus does not fail: it runs a throw-away
  ``certmonger -n -L -c 'getcert ...'`` on /var/lib/certmonger (in the
  guest, its overlay), which knows none of the node's requests and (-L)
  runs no post-save hook.  A getcert that misses DBUS_SYSTEM_BUS_ADDRESS
  "works", against the wrong certmonger.
* certmonger looks at a certificate at most every 30 min and renews when
  its time left crosses 28, 7, 3, 2 or 1 days, or it expired (its
  source); the revisits its debug log showed: a 2-day certificate after
  86187 s (at 1 day left), a 10-min one after 1800 s (expired by then),
  one expired when certmonger started after 86400 s.  To renew in a
  test, ``getcert resubmit``.
* A peer certificate from another CA: pluto logs "NSS: ERROR: IPsec
  certificate ... invalid: SEC_ERROR_UNKNOWN_ISSUER" and deletes the IKE
  SA; a conn initiated by whack is revived every 5 s all the same.
* The helper reads the CSR's SANs off ``openssl req -text``: enough for
  the lab's certmongers, no parser for hostile CSRs; a DNS name with
  anything but [A-Za-z0-9*_.-] is refused (exit 2).
"""

import datetime
import fcntl
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

CA_NAME = 'tripleo-ipsec-lab'          # certmonger's name of the lab's CA
CA_NICKNAME = 'tripleo-ipsec-ca'       # its nickname in the nodes' NSS dbs
NSSDIR = 'sql:/etc/ipsec.d'            # a node's libreswan NSS db, in it
DEFAULT_VALIDITY = '2d'
OPENSSL = '/usr/bin/openssl'
GETCERT = '/usr/bin/getcert'
CERTMONGER = '/usr/sbin/certmonger'
DBUS_DAEMON = '/usr/bin/dbus-daemon'
PYTHON = '/usr/bin/python3'
# certmonger's external helper protocol: the exit codes
ISSUED, REJECTED, UNCONFIGURED, UNSUPPORTED = 0, 2, 4, 6
UNITS = {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400}
# what a DNS SAN may hold: anything else is refused, not written into
# openssl's config
DNS_NAME = re.compile(r'^[A-Za-z0-9*_]([A-Za-z0-9*_.-]{0,252})$')

OPENSSL_CNF = """\
# the lab's CA (tripleo_ipsec_lab/certs.py)
[ca]
default_ca = lab

[lab]
database = {dir}/index.txt
new_certs_dir = {dir}/issued
# unused (-rand_serial), but openssl ca wants it named
serial = {dir}/serial
certificate = {dir}/ca.pem
private_key = {dir}/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no

[anything]
commonName = optional

[req]
distinguished_name = dn
x509_extensions = v3_ca

[dn]

[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

LEAF_EXT = """\
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

# a private system bus for one node's certmonger and getcert
BUS_CONF = """\
<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={run}/bus</listen>
  <auth>EXTERNAL</auth>
  <pidfile>{run}/dbus.pid</pidfile>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def validity_seconds(text):
    """'2d', '90m', '3600' ... -> seconds."""
    match = re.match(r'^\s*(\d+)\s*([smhd]?)\s*$', str(text))
    if not match or not int(match.group(1)):
        raise ValueError('bad validity %r (e.g. 2d, 12h, 30m, 600)' % text)
    return int(match.group(1)) * UNITS[match.group(2)]


def rundir(netns):
    """Where NETNS's certmonger and its bus live: the guest's tmpfs."""
    return '/run/certmonger-%s' % netns


def node_env(netns):
    """What a command in NETNS needs to reach the node's certmonger."""
    return {'DBUS_SYSTEM_BUS_ADDRESS': 'unix:path=%s/bus' % rundir(netns)}


def env_argv(env, argv):
    return ['/usr/bin/env'] + ['%s=%s' % kv for kv in sorted(env.items())] \
        + list(argv)


# -- the helper: runs in the guest, under certmonger, standard library only
def requested_sans(csr_path):
    """The DNS and IP subjectAltNames a CSR asks for: ([dns], [ip])."""
    text = subprocess.run(
        [OPENSSL, 'req', '-in', csr_path, '-noout', '-text'],
        capture_output=True, text=True, check=True).stdout.splitlines()
    dns, ips = [], []
    for i, line in enumerate(text):
        if 'X509v3 Subject Alternative Name' not in line:
            continue
        for entry in text[i + 1].strip().split(', '):
            kind, _, value = entry.partition(':')
            if kind == 'DNS':
                if not DNS_NAME.match(value):
                    raise ValueError('bad DNS name %r' % value)
                dns.append(value)
            elif kind == 'IP Address':
                ips.append(str(ipaddress.ip_address(value)))
    return dns, ips


def sign(ca_dir, csr_pem, seconds):
    """Sign CSR_PEM with the CA in CA_DIR; returns the PEM certificate."""
    cnf = os.path.join(ca_dir, 'openssl.cnf')
    tmp = tempfile.mkdtemp(prefix='lab-ca-')
    try:
        csr = os.path.join(tmp, 'req.pem')
        with open(csr, 'w') as f:
            f.write(csr_pem)
        dns, ips = requested_sans(csr)
        ext = os.path.join(tmp, 'ext.cnf')
        with open(ext, 'w') as f:
            f.write(LEAF_EXT)
            if dns or ips:
                f.write('subjectAltName = @alt\n[alt]\n')
                f.writelines('DNS.%d = %s\n' % n for n in enumerate(dns))
                f.writelines('IP.%d = %s\n' % n for n in enumerate(ips))
        now = datetime.datetime.now(datetime.timezone.utc)
        # a little slack before now: the nodes share the guest's clock,
        # the host reads the certificate too
        start = now - datetime.timedelta(seconds=300)
        end = now + datetime.timedelta(seconds=seconds)
        out = os.path.join(tmp, 'cert.pem')
        with open(os.path.join(ca_dir, 'lock'), 'w') as lock:
            # index.txt is openssl's: one signer at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            subprocess.run(
                [OPENSSL, 'ca', '-batch', '-config', cnf, '-notext',
                 '-rand_serial', '-preserveDN', '-in', csr, '-out', out,
                 '-startdate', start.strftime('%Y%m%d%H%M%SZ'),
                 '-enddate', end.strftime('%Y%m%d%H%M%SZ'),
                 '-extfile', ext, '-extensions', 'leaf'],
                capture_output=True, text=True, check=True)
        with open(out) as f:
            return f.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def submit(ca_dir, environ=None, out=None):
    """certmonger's external CA helper; returns its exit code.

    SUBMIT (the default when certmonger names no operation) prints the
    certificate; every other operation is unsupported (6).
    """
    environ = os.environ if environ is None else environ
    out = out or sys.stdout
    if environ.get('CERTMONGER_OPERATION', 'SUBMIT') != 'SUBMIT':
        return UNSUPPORTED
    csr = environ.get('CERTMONGER_CSR')
    if not csr:
        out.write('no CERTMONGER_CSR\n')
        return UNCONFIGURED
    try:
        with open(os.path.join(ca_dir, 'validity')) as f:
            seconds = validity_seconds(f.read())
        out.write(sign(ca_dir, csr, seconds))
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        # REJECTED's message is what ``getcert list`` shows as ca-error
        out.write('%s %s\n' % (e, getattr(e, 'stderr', '') or ''))
        return REJECTED
    return ISSUED


# -- the host's side ----------------------------------------------------
class LabCA(object):
    """A CA in WORK/ca, and its certmonger helper.

    The key and the certificate are made on the host with openssl; the
    helper (``self.helper``) runs in the guest, where certmonger calls it:
    WORK is the same path on both sides.
    """

    def __init__(self, guest, work, name=CA_NAME,
                 subject='/O=tripleo-ipsec lab/CN=tripleo-ipsec lab CA',
                 validity=DEFAULT_VALIDITY, days=3650):
        self.guest = guest
        self.name = name
        self.subject = subject
        self.dir = os.path.join(os.path.abspath(work), 'ca')
        self.ca_pem = os.path.join(self.dir, 'ca.pem')
        self.key = os.path.join(self.dir, 'ca.key')
        self.helper = os.path.join(self.dir, 'submit')
        self.validity_file = os.path.join(self.dir, 'validity')
        os.makedirs(os.path.join(self.dir, 'issued'), exist_ok=True)
        os.chmod(self.dir, 0o700)
        with open(os.path.join(self.dir, 'openssl.cnf'), 'w') as f:
            f.write(OPENSSL_CNF.format(dir=self.dir))
        index = os.path.join(self.dir, 'index.txt')
        if not os.path.exists(index):
            open(index, 'w').close()
        if not os.path.exists(self.ca_pem):
            self._create(subject, days)
        shutil.copy(os.path.abspath(__file__),
                    os.path.join(self.dir, 'certs.py'))
        with open(self.helper, 'w') as f:
            # the operations but SUBMIT are unsupported (6): answered
            # without a Python start, which costs in the guest
            f.write('#!/bin/sh\n# certmonger helper of the lab CA %s\n'
                    '[ "${CERTMONGER_OPERATION:-SUBMIT}" = SUBMIT ] || '
                    'exit 6\n'
                    'exec %s %s submit %s\n'
                    % (name, PYTHON,
                       shlex.quote(os.path.join(self.dir, 'certs.py')),
                       shlex.quote(self.dir)))
        os.chmod(self.helper, 0o755)
        self.set_validity(validity)

    def _create(self, subject, days):
        old = os.umask(0o077)
        try:
            subprocess.run(
                [OPENSSL, 'req', '-x509', '-new', '-newkey', 'rsa:2048',
                 '-nodes', '-sha256', '-config',
                 os.path.join(self.dir, 'openssl.cnf'), '-subj', subject,
                 '-days', str(days), '-keyout', self.key, '-out',
                 self.ca_pem], capture_output=True, check=True)
        finally:
            os.umask(old)
        os.chmod(self.key, 0o600)
        os.chmod(self.ca_pem, 0o644)

    def set_validity(self, validity):
        """How long the certificates the helper signs from now on live."""
        validity_seconds(validity)
        with open(self.validity_file, 'w') as f:
            f.write('%s\n' % validity)

    # -- in the nodes ---------------------------------------------------
    def start_certmonger(self, netns, timeout=60):
        """NETNS's certmonger, with this CA added; returns the node's env."""
        return start_certmonger(self.guest, netns, [self], timeout=timeout)

    def register(self, netns):
        """Add this CA to NETNS's running certmonger."""
        getcert(self.guest, netns, 'add-ca', '-c', self.name, '-e',
                self.helper)

    def trust(self, netns, nssdir=NSSDIR, nickname=CA_NICKNAME):
        """Import the CA into NETNS's NSS db as a trusted CA (CT,,)."""
        self.guest.run(['certutil', '-A', '-d', nssdir, '-n', nickname,
                        '-t', 'CT,,', '-a', '-i', self.ca_pem], netns=netns)


def start_certmonger(guest, netns, cas=(), timeout=60):
    """A private system bus and ``certmonger -S`` in node NETNS.

    Everything certmonger keeps is under /run/certmonger-NETNS; the CAs
    CAS are added.  Returns the env the node's commands need to reach it
    (``node_env``).
    """
    run = rundir(netns)
    env = node_env(netns)
    daemon_env = dict(env, CERTMONGER_REQUESTS_DIR=run + '/requests',
                      CERTMONGER_CAS_DIR=run + '/cas',
                      CERTMONGER_LOCAL_CA_DIR=run + '/local',
                      CERTMONGER_TMP_DIR=run + '/tmp')
    lines = [
        'R=%s' % run,
        'mkdir -p -m 0700 $R $R/requests $R/cas $R/local $R/tmp',
        'cat > $R/bus.conf',
        '%s --config-file=$R/bus.conf --fork --print-address=1 '
        '>$R/bus.address 2>>$R/dbus.log </dev/null' % DBUS_DAEMON,
        '%s %s -S -f -p $R/certmonger.pid >>$R/certmonger.log 2>&1 '
        '</dev/null' % (' '.join('%s=%s' % kv for kv in
                                 sorted(daemon_env.items())), CERTMONGER),
        'export %s' % ' '.join('%s=%s' % kv for kv in env.items()),
        'end=$(($(date +%%s) + %d))' % timeout,
        'until %s list-cas >/dev/null 2>&1; do' % GETCERT,
        '  [ $(date +%s) -lt $end ] || { echo certmonger is not on the bus;'
        ' exit 1; }',
        '  sleep 0.05',
        'done']
    for ca in cas:
        lines.append('%s add-ca -c %s -e %s' % (
            GETCERT, shlex.quote(ca.name), shlex.quote(ca.helper)))
    guest.run(['/bin/sh', '-ec', '\n'.join(lines)], netns=netns,
              stdin=BUS_CONF.format(run=run), timeout=timeout + 30)
    return env


def stop_certmonger(guest, netns, timeout=30):
    """Stop NETNS's certmonger and its bus (by their pid files)."""
    guest.run(['/bin/sh', '-c',
               'R=%s; for d in certmonger dbus; do\n'
               '  pid=$(cat $R/$d.pid 2>/dev/null) || continue\n'
               '  kill $pid 2>/dev/null\n'
               '  end=$(($(date +%%s) + %d))\n'
               '  while kill -0 $pid 2>/dev/null && '
               '[ $(date +%%s) -lt $end ]; do sleep 0.05; done\n'
               '  kill -9 $pid 2>/dev/null; rm -f $R/$d.pid\n'
               'done; true' % (rundir(netns), timeout)],
              timeout=2 * timeout + 30)


def getcert(guest, netns, *args, check=True, timeout=120):
    """``getcert ARGS`` in node NETNS, talking to its certmonger."""
    return guest.run(env_argv(node_env(netns), [GETCERT] + list(args)),
                     netns=netns, check=check, timeout=timeout)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != 'submit':
        sys.stderr.write('usage: certs.py submit CA_DIR (certmonger '
                         'runs it)\n')
        return 2
    return submit(argv[1])


if __name__ == '__main__':
    sys.exit(main())
