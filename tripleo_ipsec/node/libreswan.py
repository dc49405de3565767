"""Talk to a running pluto, for libreswan 4.x and 5.x.

The one place that knows libreswan's commands and output: the node side
(shipped to nodes as the Ansible role's module_utils, so it uses the
standard library only), ``tripleo-ipsec verify`` and the tests all use it.
Every command runs with a timeout; nothing here restarts pluto.
"""

import os
import re
import subprocess
import tempfile

DEFAULT_CTLSOCKET = '/run/pluto/pluto.ctl'
DEFAULT_TIMEOUT = 120
PREFIX = 'tripleo-'

_HEADER = re.compile(r'^000 "([^"]+)": \S+\.\.\.\S+; ([a-z ]+);')
# libreswan 5 says "Child SA" where 4 says "IPsec SA"
_SERIALS = re.compile(r'^000 "([^"]+)":\s+newest IKE SA: #(\d+); '
                      r'newest (?:IPsec|Child) SA: #(\d+); '
                      r'conn serial: \$(\d+)')
_VERSION = re.compile(r'Libreswan (\d+)\.(\d+)')


class LibreswanError(Exception):
    pass


class Conn(object):
    """What pluto says of one loaded conn."""

    __slots__ = ('name', 'routing', 'ike_sa', 'ipsec_sa', 'serial')

    def __init__(self, name):
        self.name, self.routing = name, ''
        self.ike_sa = self.ipsec_sa = self.serial = 0

    @property
    def established(self):
        """Has an IPsec (Child) SA."""
        return self.ipsec_sa > 0

    def to_dict(self):
        return {'routing': self.routing, 'ike_sa': self.ike_sa,
                'ipsec_sa': self.ipsec_sa, 'serial': self.serial,
                'established': self.established}


def parse_status(text):
    """``whack --status`` -> {conn name: Conn}."""
    conns = {}
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            conns.setdefault(match.group(1), Conn(match.group(1))).routing = \
                match.group(2)
            continue
        match = _SERIALS.match(line)
        if match:
            conn = conns.setdefault(match.group(1), Conn(match.group(1)))
            conn.ike_sa, conn.ipsec_sa, conn.serial = (
                int(match.group(2)), int(match.group(3)),
                int(match.group(4)))
    return conns


def split_conf(text):
    """An ipsec.conf text -> {conn name: its whole section}."""
    sections = {}
    for part in ('\n' + text).split('\nconn ')[1:]:
        name = part.split('\n', 1)[0].strip()
        body = []
        for line in part.split('\n')[1:]:
            if line and not line[0].isspace():
                break
            body.append(line)
        sections[name] = 'conn %s\n%s\n' % (name, '\n'.join(body).rstrip())
    return sections


def includes(section):
    """Names a conn section pulls in with ``also=``."""
    return re.findall(r'^\s+also=(\S+)', section, re.M)


class Libreswan(object):
    """One pluto, reached through its control socket."""

    def __init__(self, ctlsocket=DEFAULT_CTLSOCKET, timeout=DEFAULT_TIMEOUT,
                 command=('ipsec',)):
        self.ctlsocket = ctlsocket
        self.timeout = timeout
        self.ipsec = list(command)     # e.g. ip netns exec NS ipsec
        self._version = None

    def _run(self, args, check=True):
        try:
            result = subprocess.run(args, capture_output=True, text=True,
                                    timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise LibreswanError('%s timed out after %d s'
                                 % (' '.join(args[:3]), self.timeout))
        except OSError as exc:
            raise LibreswanError('%s: %s' % (args[0], exc.strerror))
        if check and result.returncode:
            raise LibreswanError('%s: rc %d: %s' % (
                ' '.join(args[:4]), result.returncode,
                (result.stderr or result.stdout).strip().splitlines()[-1:]))
        return result

    def whack(self, *args, check=True):
        return self._run(self.ipsec + ['whack', '--ctlsocket',
                                       self.ctlsocket] + list(args),
                         check=check)

    @property
    def version(self):
        """(major, minor) of the installed libreswan, asked once."""
        if self._version is None:
            out = self._run(self.ipsec + ['--version']).stdout
            match = _VERSION.search(out)
            if not match:
                raise LibreswanError('not libreswan: %s' % out.strip()[:80])
            self._version = (int(match.group(1)), int(match.group(2)))
        return self._version

    def running(self):
        return self.whack('--status', check=False).returncode == 0

    def status(self):
        return parse_status(self.whack('--status').stdout)

    def add(self, sections, names):
        """Load ``names`` in one addconn run (one parse), routing traps.

        ``sections`` maps every conn name to its section text, so the shared
        sections the conns include come along.
        """
        if not names:
            return
        wanted, seen = [], set()

        def pull(name):
            if name in seen:
                return
            seen.add(name)
            for other in includes(sections[name]):
                pull(other)
            wanted.append(sections[name])
        for name in names:
            pull(name)
        fd, path = tempfile.mkstemp(prefix='tripleo-ipsec-', suffix='.conf')
        try:
            with os.fdopen(fd, 'w') as f:
                f.write('config setup\n\n' + '\n'.join(wanted))
            # --autoall adds every conn of this file and routes the
            # auto=ondemand ones; the shared sections (no auto=) stay out
            self._run(self.ipsec + ['addconn', '--ctlsocket', self.ctlsocket,
                                    '--config', path, '--autoall'])
        finally:
            os.unlink(path)

    def delete(self, name):
        self.whack('--delete', '--name', name)

    def initiate(self, name):
        self.whack('--initiate', '--asynchronous', '--name', name)

    def rereadsecrets(self):
        self.whack('--rereadsecrets')


def holder_conns(manifest):
    """The VIP-holder conns of a manifest: loaded only where the VIP is."""
    return {n for vip in manifest.get('vips', {}).values()
            for n in vip.get('holder', [])}


def verify(manifest, status, vips=False):
    """Which expected conns of a node have an established Child SA.

    Expected: every host-to-host conn; with ``vips``, also every VIP conn
    towards a VIP (the peer side).  Returns a JSON-able report.
    """
    holders = holder_conns(manifest)
    peer_side = {n for vip in manifest.get('vips', {}).values()
                 for n in vip.get('peer', [])}
    expected = sorted(n for n in manifest.get('conns', {})
                      if n not in holders and (vips or n not in peer_side))
    conns = {}
    for name in expected:
        conn = status.get(name)
        conns[name] = conn.to_dict() if conn else {'loaded': False,
                                                   'established': False}
    missing = [n for n in expected if not conns[n]['established']]
    return {'host': manifest.get('host'), 'expected': len(expected),
            'established': len(expected) - len(missing),
            'missing': missing, 'conns': conns, 'ok': not missing}
