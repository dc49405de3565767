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

"""The lab's CA and the nodes' certmongers (tripleo_ipsec_lab/certs.py).

On the host: the CA's helper speaks certmonger's protocol.  In the lab's
guest: two nodes enrol with their own certmonger against the one lab CA
(post-save hooks and a resubmit included), then their plutos authenticate
each other with those certificates and build an ESP Child SA; a peer
whose certificate another CA signed is refused.
"""

import concurrent.futures
import os
import re
import shutil
import subprocess
import time

from testtools import content

from tests import base
from tripleo_ipsec_lab import certs
from tripleo_ipsec_lab import guest
from tripleo_ipsec_lab import overcloud

NICK = 'tripleo-ipsec-internal_api'
ROGUE_NICK = 'tripleo-ipsec-rogue'
DOMAIN = 'internalapi.example.com'
NODES = {'a': '172.17.0.10', 'b': '172.17.0.11'}
CONN = """\
config setup

conn {name}
    left={left}
    right={right}
    leftid=@{me}.{domain}
    rightid=@{peer}.{domain}
    leftcert={cert}
    leftsendcert=always
    authby=rsasig
    type=transport
    ikev2=insist
    keyingtries=1
    auto=add
"""


def openssl(*args, stdin=None):
    return subprocess.run(['openssl'] + list(args), input=stdin,
                          capture_output=True, text=True, check=True).stdout


def csr(work, sans):
    key, req = os.path.join(work, 'key.pem'), os.path.join(work, 'req.pem')
    openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
            '-subj', '/CN=node', '-out', req, '-addext',
            'subjectAltName=' + sans, '-addext', 'basicConstraints=CA:TRUE')
    with open(req) as f:
        return f.read()


class TestLabCAHelper(base.TestCase):
    """The helper on the host: no guest needed."""

    def setUp(self):
        super(TestLabCAHelper, self).setUp()
        if not shutil.which('openssl'):
            self.skipTest('openssl is not installed')
        self.work = self.tempdir()
        self.ca = certs.LabCA(None, self.work)

    def helper(self, **env):
        return subprocess.run([self.ca.helper], capture_output=True,
                              text=True, env=dict(os.environ, **env),
                              timeout=60)

    def test_submit_copies_the_dns_and_ip_sans_only(self):
        self.assertEqual(0o600, os.stat(self.ca.key).st_mode & 0o777)
        self.ca.set_validity('90m')
        result = self.helper(CERTMONGER_OPERATION='SUBMIT',
                             CERTMONGER_CSR=csr(
                                 self.work, 'DNS:a.%s,IP:172.17.0.10,'
                                 'IP:fd00::10,email:x@example.com' % DOMAIN))
        self.assertEqual(0, result.returncode, result.stdout)
        cert = result.stdout
        self.assertIn('-----BEGIN CERTIFICATE-----', cert)
        text = openssl('x509', '-noout', '-text', stdin=cert)
        self.assertIn('DNS:a.%s, IP Address:172.17.0.10, '
                      'IP Address:FD00:0:0:0:0:0:0:10' % DOMAIN, text)
        self.assertNotIn('email:', text)
        # the CSR asked to be a CA: the helper does not copy that
        self.assertIn('CA:FALSE', text)
        self.assertIn('OK', openssl('verify', '-CAfile', self.ca.ca_pem,
                                    stdin=cert))
        start, end = [
            openssl('x509', '-noout', '-%s' % which, '-dateopt', 'iso_8601',
                    stdin=cert).split('=', 1)[1].strip()
            for which in ('startdate', 'enddate')]
        span = (time.mktime(time.strptime(end, '%Y-%m-%d %H:%M:%SZ'))
                - time.mktime(time.strptime(start, '%Y-%m-%d %H:%M:%SZ')))
        # the validity asked for, and the 5 min of slack before now
        self.assertEqual(90 * 60 + 300, span)

    def test_other_operations_are_unsupported_and_bad_sans_rejected(self):
        for op in ('IDENTIFY', 'FETCH-ROOTS', 'POLL',
                   'GET-NEW-REQUEST-REQUIREMENTS'):
            self.assertEqual(6, self.helper(
                CERTMONGER_OPERATION=op).returncode, op)
        self.assertEqual(6, certs.submit(
            self.ca.dir, {'CERTMONGER_OPERATION': 'IDENTIFY'}))
        # a DNS name that would be openssl config is refused
        bad = self.helper(CERTMONGER_OPERATION='SUBMIT',
                          CERTMONGER_CSR=csr(self.work, 'DNS:a=b'))
        self.assertEqual(2, bad.returncode, bad.stdout)
        self.assertEqual(4, self.helper(
            CERTMONGER_OPERATION='SUBMIT').returncode)
        self.assertRaises(ValueError, self.ca.set_validity, '2 weeks')


class TestCertmongerInTheLab(base.TestCase):

    def setUp(self):
        super(TestCertmongerInTheLab, self).setUp()
        why = guest.unavailable()
        if why:
            self.skipTest(why)
        for tool in (certs.CERTMONGER, certs.DBUS_DAEMON, certs.OPENSSL):
            if not os.path.exists(tool):
                self.skipTest('%s is not installed (tools/install)' % tool)
        self.work = self.tempdir()
        self.timings = {}

    def timed(self, what, func, *args, **kwargs):
        start = time.monotonic()
        result = func(*args, **kwargs)
        self.timings[what] = round(time.monotonic() - start, 1)
        return result

    def both(self, func):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return dict(zip(NODES, pool.map(func, NODES)))

    def build(self, g):
        lines = ['modprobe -a %s' % ' '.join(overcloud.MODULES),
                 'ip link add va type veth peer name vb']
        for ns, address in NODES.items():
            etc = '/etc/netns/%s' % ns
            lines += [
                'mkdir -p %s/ipsec.d /run/pluto-%s' % (etc, ns),
                "printf 'config setup\\n' > %s/ipsec.conf" % etc,
                ': > %s/ipsec.secrets' % etc,
                'certutil -N -d sql:%s/ipsec.d --empty-password' % etc,
                'ip netns add %s' % ns,
                'ip link set v%s netns %s' % (ns, ns),
                'ip -n %s link set lo up' % ns,
                'ip -n %s addr add %s/24 dev v%s' % (ns, address, ns),
                'ip -n %s link set v%s up' % (ns, ns)]
        g.run(['/bin/sh', '-ec', '\n'.join(lines)])

    def marker(self, ns):
        return os.path.join(self.work, 'post-save-%s' % ns)

    def saves(self, ns):
        try:
            with open(self.marker(ns)) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def request(self, g, ns, ca_name=certs.CA_NAME, nick=NICK, subject=''):
        # a subject of its own: NSS names every certificate of one subject
        # alike, and getcert's default (CN=<hostname>) is the guest's name
        # in every node
        fqdn = '%s.%s' % (ns, DOMAIN)
        result = certs.getcert(
            g, ns, 'request', '-w', '-c', ca_name, '-d', certs.NSSDIR,
            '-n', nick, '-N', 'CN=%s%s' % (fqdn, subject), '-D', fqdn,
            '-A', NODES[ns],
            '-C', 'sh -c "echo %s >> %s"' % (nick, self.marker(ns)),
            timeout=180)
        return re.search(r'New signing request "(\S+)" added',
                         result.stdout).group(1)

    def status(self, g, ns, rid):
        out = certs.getcert(g, ns, 'list', '-i', rid).stdout
        return re.search(r'status: (\S+)', out).group(1)

    def cert(self, g, ns, nick=NICK):
        """(PEM, openssl's text) of NICK in node NS's NSS db."""
        pem = g.run(['certutil', '-L', '-d', certs.NSSDIR, '-n', nick, '-a'],
                    netns=ns).stdout
        return pem, openssl('x509', '-noout', '-text', '-serial', stdin=pem)

    def serial(self, text):
        return re.search(r'^serial=(\S+)$', text, re.M).group(1)

    def pluto(self, g, ns):
        g.run([os.path.join(overcloud.LIBEXEC, 'pluto'), '--config',
               '/etc/ipsec.conf', '--secretsfile', '/etc/ipsec.secrets',
               '--nssdir', '/etc/ipsec.d', '--rundir', '/run/pluto-%s' % ns,
               '--logfile', self.log(ns)], netns=ns)
        deadline = time.monotonic() + 60
        listen = '%s:500' % NODES[ns]
        while listen not in self.whack(g, ns, '--status', check=False).stdout:
            self.assertLess(time.monotonic(), deadline, 'pluto of %s' % ns)
            time.sleep(0.05)

    def log(self, ns):
        return os.path.join(self.work, 'pluto-%s.log' % ns)

    def whack(self, g, ns, *args, check=True):
        return g.run([os.path.join(overcloud.LIBEXEC, 'whack'),
                      '--ctlsocket', '/run/pluto-%s/pluto.ctl' % ns]
                     + list(args), netns=ns, check=check)

    def add_conn(self, g, ns, name, cert=NICK):
        peer = 'b' if ns == 'a' else 'a'
        path = os.path.join(self.work, '%s-%s.conf' % (name, ns))
        with open(path, 'w') as f:
            f.write(CONN.format(name=name, left=NODES[ns], right=NODES[peer],
                                me=ns, peer=peer, domain=DOMAIN, cert=cert))
        g.run([os.path.join(overcloud.LIBEXEC, 'addconn'), '--ctlsocket',
               '/run/pluto-%s/pluto.ctl' % ns, '--config', path, name],
              netns=ns)

    def wait_log(self, ns, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log(ns)) as f:
                match = re.search(pattern, f.read())
            if match:
                return match
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def test_two_nodes_enrol_with_the_lab_ca_and_authenticate_by_cert(self):
        g = self.timed('boot', guest.Guest(self.work, timeout=400).boot)
        self.addCleanup(g.close)
        ca = certs.LabCA(g, self.work)
        rogue = certs.LabCA(g, os.path.join(self.work, 'rogue'),
                            name='rogue', subject='/CN=rogue CA')
        self.build(g)
        envs = self.timed('certmonger start (both)', self.both,
                          ca.start_certmonger)
        self.assertEqual({'DBUS_SYSTEM_BUS_ADDRESS':
                          'unix:path=/run/certmonger-a/bus'}, envs['a'])
        self.assertIn(certs.CA_NAME,
                      certs.getcert(g, 'b', 'list-cas').stdout)

        # -- enrolment: one request a node, post-save, resubmit ----------
        ids = self.timed('request -w (both)', self.both,
                         lambda ns: self.request(g, ns))
        # the CA's name as pluto writes it
        ca_dn = ', '.join(ca.subject.strip('/').split('/'))
        issuer = openssl('x509', '-noout', '-subject', '-nameopt', 'RFC2253',
                         '-in', ca.ca_pem).split('=', 1)[1].strip()
        serials = {}
        for ns, rid in ids.items():
            self.assertEqual('MONITORING', self.status(g, ns, rid))
            pem, text = self.cert(g, ns)
            self.assertIn('DNS:%s.%s, IP Address:%s' % (ns, DOMAIN,
                                                        NODES[ns]), text)
            self.assertEqual(issuer, openssl(
                'x509', '-noout', '-issuer', '-nameopt', 'RFC2253',
                stdin=pem).split('=', 1)[1].strip())
            self.assertIn('OK', openssl('verify', '-CAfile', ca.ca_pem,
                                        stdin=pem))
            self.assertEqual([NICK], self.saves(ns))
            serials[ns] = self.serial(text)
        start = time.monotonic()
        certs.getcert(g, 'a', 'resubmit', '-w', '-i', ids['a'], timeout=180)
        self.timings['resubmit -w'] = round(time.monotonic() - start, 1)
        self.assertEqual('MONITORING', self.status(g, 'a', ids['a']))
        self.assertNotEqual(serials['a'], self.serial(self.cert(g, 'a')[1]))
        self.assertEqual([NICK, NICK], self.saves('a'))
        # b's other certificate, from another CA, for the refusal below
        rogue.register('b')
        self.request(g, 'b', rogue.name, ROGUE_NICK, subject=',O=rogue')
        self.assertIn('Issuer: CN = rogue CA',
                      self.cert(g, 'b', ROGUE_NICK)[1])

        # -- IKE between the nodes with those certificates --------------
        for ns in NODES:
            ca.trust(ns)
        self.timed('pluto start (both)', self.both,
                   lambda ns: self.pluto(g, ns))
        for ns in NODES:
            self.add_conn(g, ns, 't')
        start = time.monotonic()
        self.whack(g, 'a', '--name', 't', '--initiate')
        established = self.wait_log('a', r'established Child SA')
        self.timings['initiate -> Child SA'] = round(
            time.monotonic() - start, 1)
        self.assertIsNotNone(established, 'no Child SA')
        for ns, peer in (('a', 'b'), ('b', 'a')):
            # each end checked the other's certificate, from the lab's CA
            self.assertIsNotNone(self.wait_log(
                ns, r"established IKE SA; authenticated peer .* using peer "
                r"certificate '@%s\.%s' issued by CA '%s'" % (
                    peer, re.escape(DOMAIN), re.escape(ca_dn))), ns)
            status = self.whack(g, ns, '--status').stdout
            self.assertRegex(status, r'"t".*STATE_V2_ESTABLISHED_IKE_SA')
            self.assertRegex(status, r'"t".*STATE_V2_ESTABLISHED_CHILD_SA')
            xfrm = g.run(['ip', 'xfrm', 'state'], netns=ns).stdout
            for src, dst in ((ns, peer), (peer, ns)):
                self.assertIn('src %s dst %s\n\tproto esp'
                              % (NODES[src], NODES[dst]), xfrm)
            self.assertIn('mode transport', xfrm)

        # -- a certificate of another CA is refused ---------------------
        for ns in NODES:
            self.whack(g, ns, '--delete', '--name', 't')
        self.add_conn(g, 'a', 'r')
        self.add_conn(g, 'b', 'r', cert=ROGUE_NICK)
        self.whack(g, 'a', '--name', 'r', '--asynchronous', '--initiate')
        refused = self.wait_log(
            'a', r'"r" #\d+: NSS: ERROR: IPsec certificate '
            r'CN=b\.internalapi\.example\.com,O=rogue invalid: '
            r'SEC_ERROR_UNKNOWN_ISSUER')
        self.assertIsNotNone(refused, 'a did not refuse the rogue cert')
        status = self.whack(g, 'a', '--status').stdout
        self.assertNotRegex(status, r'"r".*STATE_V2_ESTABLISHED')
        self.assertNotIn('proto esp',
                         g.run(['ip', 'xfrm', 'state'], netns='a').stdout)

        # -- the node's Ansible interpreter reaches the node's certmonger --
        wrapper = g.python_wrapper('a', os.path.join(self.work, 'a-python'),
                                   env=envs['a'])
        listed = subprocess.run(
            [wrapper, '-c', 'import subprocess; subprocess.run(["getcert", '
             '"list"], check=True)'], capture_output=True, text=True,
            timeout=120)
        self.assertEqual(0, listed.returncode, listed.stderr)
        self.assertIn("Request ID '%s'" % ids['a'], listed.stdout)

        # -- stopped: the daemons and the bus are gone ------------------
        self.both(lambda ns: certs.stop_certmonger(g, ns))
        self.assertEqual('', g.run(['sh', '-c', 'ls /run/certmonger-*/*.pid '
                                    '/run/certmonger-*/bus 2>/dev/null; '
                                    'true']).stdout)
        # getcert without its bus does not fail: it runs a throw-away
        # ``certmonger -L`` on the guest's /var/lib/certmonger, which
        # knows nothing of the node's requests
        self.assertNotIn(ids['a'], certs.getcert(g, 'a', 'list').stdout)
        self.addDetail('timings', content.text_content(repr(self.timings)))
