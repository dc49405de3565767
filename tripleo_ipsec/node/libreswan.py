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

"""Talk to a running pluto, for libreswan 4.x and 5.x.

The one place that knows libreswan's commands and output: the node side
(shipped to nodes as the Ansible role's module_utils, so it uses the
standard library only), ``tripleo-ipsec verify`` and the tests all use it.
Every command runs with a timeout; nothing here restarts pluto.
"""

import ipaddress
import json
import os
import re
import stat
import subprocess
import tempfile
import time

try:
    from tripleo_ipsec.node import names
except ImportError:     # on a node, shipped as the role's module_utils
    from ansible.module_utils import tripleo_ipsec_names as names

DEFAULT_TIMEOUT = 120

# whack --status: 4.x starts every line with "000 ", 5.x with nothing.
# The first line of a conn: its ends and its routing ("prospective erouted"
# in 4.x, "routed-ondemand" in 5.x)
_HEADER = re.compile(r'^(?:000 )?"([^"]+)": \S+\.\.\.\S+; ([a-z -]+);')
# 4.x: its SAs and serial on one line (4.0-4.7 say ISAKMP SA for IKEv2)
_SERIALS = re.compile(r'^000 "([^"]+)":\s+newest (?:IKE|ISAKMP) SA: #(\d+); '
                      r'newest IPsec SA: #(\d+); '
                      r'conn serial: \$(\d+)')
# 5.x: "routing: routed-ondemand; ... established IKE SA: #1; established
# Child SA: #2;" (each only while there is one), then "conn serial: $3;"
_ROUTING_5 = re.compile(r'^"([^"]+)":\s+routing: ')
_ESTABLISHED_5 = re.compile(r' established (IKE|Child) SA: #(\d+);')
_SERIAL_5 = re.compile(r'^"([^"]+)":\s+conn serial: \$(\d+)')
_VERSION = re.compile(r'Libreswan (\d+)\.(\d+)')
# how a conn authenticates ("our auth:secret", "our auth:rsasig(RSASIG+..)")
# and the certificate it shows ("mycert=<nickname>;")
_AUTH = re.compile(r'^(?:000 )?"([^"]+)":\s+our auth:([a-z]+)')
_MYCERT = re.compile(r'^(?:000 )?"([^"]+)":\s+oriented;.* mycert=([^;]+);')
# whack --listcerts / --listcacerts: a certificate's block
_CERT = re.compile(r'^(?:000 )?(?:End|Root CA|CA) certificate "([^"]+)" - '
                   r'SN: (0x[0-9a-f]+)')
_CERT_FIELD = re.compile(r'^(?:000 )?\s+(subject|issuer|not after): (.*)$')
_CERT_TIME = '%a %b %d %H:%M:%S %Y'
# whack --status: an address pluto listens on for IKE over UDP, IPv6 in
# brackets ("000 interface eth1 UDP 172.16.2.10:500" in 4.x,
# "interface eth1 172.16.2.10:UDP/500" in 5.x)
_IFACE = re.compile(r'^(?:000 )?interface \S+ (?:UDP )?\[?([0-9A-Fa-f.:]+?)'
                    r'\]?:(?:UDP/)?\d+(?:\s|$)', re.M)
_LEFT = re.compile(r'^\s+left=(\S+)', re.M)
_RIGHT = re.compile(r'^\s+right=(\S+)', re.M)
_ONDEMAND = re.compile(r'^[ \t]+auto=ondemand[ \t]*$', re.M)
_GROUP = re.compile(r'^[ \t]+right=%opportunisticgroup[ \t]*$', re.M)
# how long the kernel keeps an ACQUIRE (a larval state), in seconds
ACQ_EXPIRES = 'net.core.xfrm_acq_expires'
# The first libreswan whose secrets reread keeps a private key alive while
# a crypto helper signs with it (libreswan #1894).  Before it, a reread
# (whack --rereadsecrets, or the secrets reload every whack --listen does)
# frees the keys of every cert conn under the helpers: in the lab's
# psk -> cert switch, 4.10's pluto died 15 ms after one.
SAFE_REREAD = (5, 2)

# Where ipsec.conf differs between libreswan majors, and only here: what a
# conn says, as each major wants it written.  Checked with the real ones:
# 4.10 refuses keyexchange=ikev2 ("invalid value"); 5.2 takes ikev2=insist
# but logs "ikev2=yes has been replaced by keyexchange=ikev2" for every
# conn it adds.  A bundle is rendered in one of these; the node rewrites it
# for the libreswan it runs (adapt_conf).
SYNTAX = {
    4: {'keyexchange': 'ikev2=insist'},
    5: {'keyexchange': 'keyexchange=ikev2'},
}


class LibreswanError(Exception):
    pass


class Conn(object):
    """What pluto says of one loaded conn."""

    __slots__ = ('name', 'routing', 'ike_sa', 'ipsec_sa', 'serial', 'auth',
                 'cert')

    def __init__(self, name):
        self.name, self.routing = name, ''
        self.ike_sa = self.ipsec_sa = self.serial = 0
        self.auth = self.cert = ''

    @property
    def established(self):
        """Has an IPsec (Child) SA."""
        return self.ipsec_sa > 0

    def to_dict(self):
        return {'routing': self.routing, 'ike_sa': self.ike_sa,
                'ipsec_sa': self.ipsec_sa, 'serial': self.serial,
                'established': self.established, 'auth': self.auth,
                'cert': self.cert}


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
            continue
        match = _ROUTING_5.match(line)
        if match:
            conn = conns.setdefault(match.group(1), Conn(match.group(1)))
            for kind, serial in _ESTABLISHED_5.findall(line):
                if kind == 'IKE':
                    conn.ike_sa = int(serial)
                else:
                    conn.ipsec_sa = int(serial)
            continue
        match = _SERIAL_5.match(line)
        if match:
            conns.setdefault(match.group(1), Conn(match.group(1))).serial = \
                int(match.group(2))
            continue
        match = _AUTH.match(line)
        if match:
            conns.setdefault(match.group(1), Conn(match.group(1))).auth = \
                match.group(2)
            continue
        match = _MYCERT.match(line)
        if match and match.group(2) != 'unset':
            conns.setdefault(match.group(1), Conn(match.group(1))).cert = \
                match.group(2)
    return conns


def parse_interfaces(text):
    """``whack --status`` -> the addresses pluto listens on for IKE."""
    return {str(ipaddress.ip_address(a)) for a in _IFACE.findall(text)}


def parse_certs(text):
    """``whack --listcerts`` (or ``--listcacerts``) -> {nickname: cert}.

    Each cert is {serial, subject, issuer, not_after}: what pluto holds,
    which is what it authenticates with (``not_after`` in seconds since the
    epoch, read in the node's local time as pluto prints it).
    """
    certs, current = {}, None
    for line in text.splitlines():
        match = _CERT.match(line)
        if match:
            current = certs[match.group(1)] = {'serial': match.group(2)}
            continue
        match = _CERT_FIELD.match(line)
        if match and current is not None:
            key, value = match.group(1), match.group(2).strip()
            if key == 'not after':
                try:
                    current['not_after'] = int(time.mktime(
                        time.strptime(value, _CERT_TIME)))
                except ValueError:
                    raise LibreswanError('pluto printed a certificate '
                                         'date this cannot read: %r'
                                         % value[:40])
            else:
                current[key] = value
    return certs


def syntax(major):
    """SYNTAX for libreswan ``major``: the newest entry not above it."""
    known = [m for m in SYNTAX if m <= major]
    return SYNTAX[max(known) if known else min(SYNTAX)]


def adapt_conf(text, major):
    """An ipsec.conf text, written for any major, in ``major``'s syntax.

    Only an indented line that is, whole, some major's spelling of a SYNTAX
    entry changes; every other byte is kept, so adapting twice, or to the
    syntax the text already has, changes nothing.
    """
    wanted = syntax(major)
    spelling = {line: wanted[what] for table in SYNTAX.values()
                for what, line in table.items()}
    pattern = re.compile(r'^([ \t]+)(%s)[ \t]*$' % '|'.join(
        re.escape(line) for line in sorted(spelling)), re.M)
    return pattern.sub(lambda m: m.group(1) + spelling[m.group(2)], text)


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

    def __init__(self, ctlsocket=names.CTLSOCKET, timeout=DEFAULT_TIMEOUT,
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

    def adapt(self, text):
        """An ipsec.conf text in the syntax of the libreswan here.

        ``text`` may be written for any major (see adapt_conf).
        """
        return adapt_conf(text, self.version[0])

    def running(self):
        return self.whack('--status', check=False).returncode == 0

    def status(self):
        return parse_status(self.whack('--status').stdout)

    def add(self, sections, conns):
        """Load ``conns`` in one addconn run (one parse), then their traps.

        ``sections`` maps every conn name to its section text, so the shared
        sections the conns include come along.  Returns {name: why} for
        those pluto did not load (a certificate it cannot find, say) or
        route; the kernel's safety net covers their pairs meanwhile.

        The conns are named, never ``--autoall``: that one also sends
        ``--listen``, which rereads the secrets (see SAFE_REREAD).  Only an
        address of theirs that pluto does not listen on yet (a network new
        on this node) needs that rescan.
        """
        if not conns:
            return {}
        wanted, seen = [], set()

        def pull(name):
            if name in seen:
                return
            seen.add(name)
            for other in includes(sections[name]):
                pull(other)
            wanted.append(sections[name])
        for name in conns:
            pull(name)
        # the traps go in with one whack: the ondemand conns carry this
        # load's own alias (only these: a conn another load left unrouted,
        # such as a VIP holder's own conn to its VIP, stays so)
        batch = '%s-load-%d' % (names.PREFIX, time.time_ns())
        ondemand = [n for n in conns if _ONDEMAND.search(sections[n])]
        for name in ondemand:
            at = wanted.index(sections[name])
            wanted[at] = _with_alias(wanted[at], batch)
        lefts = {_end(_LEFT, sections[n]) for n in conns} - {None}
        status = self.whack('--status').stdout
        if lefts - parse_interfaces(status):
            self.whack('--listen')
        fd, path = tempfile.mkstemp(prefix='tripleo-ipsec-', suffix='.conf')
        try:
            with os.fdopen(fd, 'w') as f:
                f.write('config setup\n\n' + '\n'.join(wanted))
            # named conns are added (replacing one of the same name in
            # pluto, in one request) whatever their auto=; addconn's exit
            # status is its last conn's, so what loaded is asked below
            result = self._run(self.ipsec + [
                'addconn', '--ctlsocket', self.ctlsocket, '--config',
                path] + list(conns), check=False)
        finally:
            os.unlink(path)
        loaded = self.status()
        why = _last_line(result) or 'see pluto\'s log'
        failed = {n: why for n in conns if n not in loaded}
        groups = [n for n in conns if _GROUP.search(sections[n]) and
                  n not in failed]
        if groups:
            # a group conn's instances (one per subnet of its policy file)
            # are made when pluto reads policies/, which --listen does
            self.whack('--listen')
        if set(ondemand) - set(failed):
            result = self.whack('--route', '--name', batch, check=False)
            if result.returncode:
                # pluto says which it could not route: those are named, the
                # rest are routed.  A conn to an address of this node's own
                # (a VIP it holds) cannot orient, and its OCF agent keeps
                # it unrouted anyway: not a failure.
                text = self.whack('--status').stdout
                loaded, here = parse_status(text), parse_interfaces(text)
                why = 'not routed: %s' % _last_line(result)
                failed.update(
                    (n, why) for n in ondemand if n in loaded and
                    n not in groups and loaded[n].routing == 'unrouted' and
                    _end(_RIGHT, sections[n]) not in here)
        if groups:
            # a group conn itself stays "unrouted": its instances carry
            # the traps
            routed = group_routed(self.status())
            failed.update((n, 'no subnet of its policy file routed')
                          for n in groups if not routed.get(n))
        return failed

    def delete(self, name):
        self.whack('--delete', '--name', name)

    def acquire_expires(self, seconds, check=False):
        """Set the kernel's ACQUIRE lifetime to SECONDS; whether it changed.

        CHECK only says whether it would change.  ``sysctl`` runs where
        pluto is (the command's prefix, if any).
        """
        current = int(self._run(self.ipsec[:-1] + [
            'sysctl', '-n', ACQ_EXPIRES]).stdout.strip())
        if current == seconds or check:
            return current != seconds
        self._run(self.ipsec[:-1] + ['sysctl', '-q', '-w', '%s=%d' % (
            ACQ_EXPIRES, seconds)])
        return True

    def initiate(self, name):
        self.whack('--initiate', '--asynchronous', '--name', name)

    def rereadsecrets(self):
        self.whack('--rereadsecrets')

    def reread_is_safe(self, status=None):
        """May the secrets be reread now without risking pluto (#1894)?

        Yes on SAFE_REREAD and later, or while no loaded conn signs with a
        certificate's private key.
        """
        if self.version >= SAFE_REREAD:
            return True
        status = self.status() if status is None else status
        return not any(c.auth == 'rsasig' for c in status.values())

    def certs(self):
        """The certificates pluto holds: {nickname: cert} (parse_certs)."""
        return parse_certs(self.whack('--listcerts').stdout)

    def ca_certs(self):
        """The CA certificates pluto trusts: {nickname: cert}."""
        return parse_certs(self.whack('--listcacerts').stdout)

    # -- the kernel's safety net under pluto's policies (names.NET_*) -----
    def ip(self, *args):
        """``ip ARGS`` where pluto is (the command's prefix, if any)."""
        return self._run(self.ipsec[:-1] + ['ip'] + list(args))

    def net(self):
        """The net's policies here: {(src, dst, dir)}."""
        return parse_net(self.ip(
            '-s', 'xfrm', 'policy', 'list', 'priority',
            str(names.NET_PRIORITY), 'action', 'block').stdout)

    def net_add(self, src, dst, direction):
        self.ip(*net_policy('add', src, dst, direction))

    def net_delete(self, src, dst, direction):
        self.ip(*net_policy('deleteall', src, dst, direction))


def net_policy(op, src, dst, direction):
    """``ip`` arguments that add (or delete) one policy of the net.

    Deletes go through deleteall, which picks ours by priority and action
    from a dump and deletes each by its index and mark: a plain delete by
    selector and mark 0/0xffffffff took pluto's mark-less policy for the
    same pair instead (kernel 6.18), and one by index found nothing.
    """
    args = ['xfrm', 'policy', op, 'src', _host_prefix(src),
            'dst', _host_prefix(dst), 'dir', direction,
            'priority', str(names.NET_PRIORITY)]
    if op == 'add':
        args += ['mark', names.NET_MARK[0], 'mask', names.NET_MARK[1]]
    return args + ['action', 'block']


# libreswan's ipsec.service (Debian 12's 4.10 and RHEL's alike): how it
# stops pluto, and its lines once pluto has stopped; service_dropin
# replaces them
WHACK = '/usr/libexec/ipsec/whack'
UNIT_STOP = WHACK + ' --shutdown'
UNIT_STOP_POST = (
    '/bin/bash -c \'if test "$EXIT_STATUS" != "12"; then /sbin/ip xfrm '
    'policy flush; /sbin/ip xfrm state flush; fi\'',
    '/usr/sbin/ipsec --stopnflog')


def stop_batch(net):
    """names.STOP_BATCH for the net NET ({(src, dst, dir)}).

    ``ip -batch`` lines: every xfrm policy flushed, the net added again,
    every state flushed.
    """
    return ('xfrm policy flush\n' + ''.join(
        ' '.join(net_policy('add', *key)) + '\n' for key in sorted(net)) +
        'xfrm state flush\n')


def group_addresses(manifest):
    """The node's own addresses on its group conns' networks, sorted."""
    groups = set(group_conns(manifest).values())
    return sorted({_net_end(local) for key, (local, _) in
                   manifest.get('net', {}).items()
                   if key.split('#', 1)[0] in groups})


def service_dropin(groups=(), addresses=()):
    """The drop-in of libreswan's ipsec.service (names.SERVICE_DROPIN).

    Once pluto has stopped, the unit flushes every xfrm policy and state
    (UNIT_STOP_POST; not when pluto left its state, exit 12), the net
    too: a pair would go in clear until pluto loads its conns again, or
    for good if it does not start.  The drop-in replaces those lines:
    after a clean shutdown (exit 0) pluto has removed its policies and
    states itself and there is nothing to flush, so the net is left as it
    is (a restart never leaves it); after a crash the flush and the net's
    return run in one ``ip`` (names.STOP_BATCH; ``-force``: every line,
    each failure reported), so the net is gone for the time ip takes
    between two of its lines, not until a later command.

    GROUPS, ADDRESSES (mode group: the node's group conns, and its
    addresses on their networks, group_addresses): pluto stops leaving
    its state (``whack --shutdown --leave-state``, exit 12), so its peers
    get no Delete and keep their SAs, and the node's traffic keeps its
    old ones.  Once the next pluto has its group conns routed (``whack
    --route``: it waits for pluto), the node's outbound SAs from those
    addresses go: a packet sent while no pluto listened would leave an
    ACQUIRE state that holds its pair back for net.core.xfrm_acq_expires
    (ip cannot delete those: a pair whose first packet went out while
    pluto was down makes the line fail, which the ``-`` lets systemd log
    and pass).  Its inbound SAs stay, so a peer's packets still arrive
    and their answers ask the new pluto for an SA too.  Only the
    restarted pluto negotiates, its peers answer.  With a Delete each
    peer negotiated too, towards a pluto not there yet, and libreswan 4.x
    put a pair whose two negotiations crossed behind its failure shunt
    for good (render.py has the figures).
    """
    text = ('# Installed by tripleo-ipsec (its apply module): what '
            'libreswan\'s unit does\n# once pluto has stopped, without '
            'ever leaving the kernel\'s safety net out:\n# nothing to '
            'flush after a clean shutdown, the net back in the same ip\n'
            '# run as the flush after a crash.\n')
    if groups:
        text += ('# Mode group: pluto stops leaving its state (its peers '
                 'keep their SAs and\n# wait for it); once the next one '
                 'has routed its group conns, the node\'s\n# outbound SAs '
                 'go and its traffic asks it for new ones.\n')
    text += '[Service]\n'
    if groups:
        text += ('ExecStop=\nExecStop=%s --leave-state\n' % UNIT_STOP +
                 ''.join('ExecStartPost=-%s --route --name %s\n' % (
                     WHACK, name) for name in sorted(groups)) +
                 ''.join('ExecStartPost=-/sbin/ip xfrm state deleteall '
                         'src %s\n' % a for a in addresses))
    return text + (
        'ExecStopPost=\n'
        'ExecStopPost=/bin/sh -c \'test "$EXIT_STATUS" = 0 || '
        'test "$EXIT_STATUS" = 12 || exec /sbin/ip -force -batch /%s\'\n'
        'ExecStopPost=%s\n' % (names.STOP_BATCH, UNIT_STOP_POST[1]))


def _end(pattern, section):
    """The address of one end (_LEFT or _RIGHT) of a conn section, or None."""
    match = pattern.search(section)
    return str(ipaddress.ip_address(match.group(1))) if match else None


def _last_line(result):
    """A command's last line of output, stderr's if it wrote any."""
    return ' '.join((result.stderr or result.stdout).strip()
                    .splitlines()[-1:])


def _with_alias(section, alias):
    """A conn section that also answers to ALIAS (its connalias words)."""
    match = re.search(r'^([ \t]+)connalias=("?)([^"\n]*)\2[ \t]*$', section,
                      re.M)
    if match:
        return '%s%sconnalias="%s %s"%s' % (
            section[:match.start()], match.group(1), match.group(3).strip(),
            alias, section[match.end():])
    return section.rstrip('\n') + '\n\tconnalias=%s\n' % alias


def holder_conns(manifest):
    """The VIP-holder conns of a manifest: loaded only where the VIP is."""
    return {n for vip in manifest.get('vips', {}).values()
            for n in vip.get('holder', [])}


_NET_HEAD = re.compile(r'^src (\S+) dst (\S+)')
_NET_BODY = re.compile(r'^\s+dir (in|out) action block index (\d+) '
                       r'priority (\d+) ', re.M)
_NET_MARK = re.compile(r'^\s+mark %s/%s\s*$' % names.NET_MARK, re.M)


def group_routed(status):
    """{group conn: [its instances' subnets that pluto routed]}."""
    routed = {}
    for name, conn in status.items():
        group, sep, subnet = name.partition('#')
        if sep and conn.routing not in ('', 'unrouted'):
            routed.setdefault(group, []).append(subnet)
    return routed


def group_conns(manifest):
    """The group conns of a manifest (mode group): {network: name}."""
    return dict(manifest.get('groups', {}))


def clear_conns(manifest):
    """The exemptions' passthrough conns: {name: exemption}."""
    return {name: text for conns in manifest.get('clear', {}).values()
            for name, text in conns.items()}


def _host_prefix(address):
    """An address as a host prefix; a subnet (a group's) as it is."""
    if '/' in address:
        return address
    return address + ('/128' if ':' in address else '/32')


def parse_net(text):
    """``ip -s xfrm policy list`` -> {(src, dst, dir)} of the net.

    Only the net's own policies: host to host, ``action block`` at
    names.NET_PRIORITY with names.NET_MARK.
    """
    found = set()
    for entry in re.split(r'\n(?=\S)', text.strip()):
        head, body = _NET_HEAD.match(entry), _NET_BODY.search(entry)
        if not (head and body and _NET_MARK.search(entry) and
                int(body.group(3)) == names.NET_PRIORITY):
            continue
        found.add((_net_end(head.group(1)), _net_end(head.group(2)),
                   body.group(1)))
    return found


def _net_end(prefix):
    """One end of a net policy as the manifest says it.

    A host's address bare, a subnet (a group conn's) as a prefix.
    """
    address = prefix.split('/')[0]
    return address if prefix == _host_prefix(address) else prefix


def net_wanted(manifest, conns):
    """The net a node wants for CONNS: {(src, dst, dir)}, both directions.

    A group conn's pairs are keyed by its instances' names (the conn's
    ``#`` a subnet of its policy file), one per subnet it covers.
    """
    conns = set(conns)
    wanted = set()
    for key, (local, remote) in manifest.get('net', {}).items():
        if key.split('#', 1)[0] in conns:
            # as the kernel lists them: a /32 (/128) as its address
            local, remote = _net_end(local), _net_end(remote)
            wanted.add((local, remote, 'out'))
            wanted.add((remote, local, 'in'))
    return wanted


DAY = 86400


def check_certs(manifest, certs, ca_certs, now=None):
    """What is wrong with the certificates a cert manifest wants.

    ``certs`` and ``ca_certs`` are what pluto holds (parse_certs).  Returns
    ({nickname: what pluto holds, with days_left}, [problem, ...]); each
    problem names the certificate, its network (and VIP) and the reason:
    not held by pluto, expired, expiring within the manifest's margin, or
    issued by a CA pluto does not trust.
    """
    wanted = manifest.get('certs') or {}
    margin = wanted.get('margin_days', 0)
    trusted = {c.get('subject') for c in ca_certs.values()}
    now = time.time() if now is None else now
    held, problems = {}, []
    for nick, spec in sorted((wanted.get('certs') or {}).items()):
        where = {'cert': nick, 'id': spec.get('id', ''),
                 'network': spec.get('network', ''),
                 'vip': spec.get('vip', '')}
        cert = certs.get(nick)
        if cert is None:
            problems.append(dict(where, reason='pluto holds no certificate '
                                 '%s (not in its NSS database, or not '
                                 'reread)' % nick))
            continue
        left = (cert.get('not_after', 0) - now) / DAY
        held[nick] = dict(cert, days_left=round(left, 2))
        if left <= 0:
            problems.append(dict(where, reason='expired on %s' % time.strftime(
                '%Y-%m-%d %H:%M', time.localtime(cert.get('not_after', 0)))))
        elif left < margin:
            problems.append(dict(where, reason='expires in %.1f days, within '
                                 'the %d-day margin' % (left, margin)))
        if cert.get('issuer') not in trusted:
            problems.append(dict(where, reason='issued by %s, which is not a '
                                 'CA this node trusts' % cert.get('issuer')))
    return held, problems


def verify(manifest, status, vips=False, certs=None, ca_certs=None,
           now=None, net=None):
    """Which expected conns of a node have an established Child SA.

    Expected: every host-to-host conn; with ``vips``, also every VIP conn
    towards a VIP (the peer side).  Each conn says how it authenticates
    (``auth``: secret or rsasig, ``cert``: the certificate it shows).  With
    auth cert, the certificates pluto holds are checked too (check_certs).
    With ``net`` (what Libreswan.net found), every expected conn's pair
    must have its safety net: ``net_missing`` lists those that have not
    (an ``ipsec`` restart flushes it; the next deploy puts it back).
    The exemptions' passthrough conns (``clear``) have no SA; each must be
    loaded and routed, or ``clear_missing`` names it.
    Returns a JSON-able report.
    """
    holders = holder_conns(manifest)
    peer_side = {n for vip in manifest.get('vips', {}).values()
                 for n in vip.get('peer', [])}
    clear = clear_conns(manifest)
    groups = set(group_conns(manifest).values())
    expected = sorted(n for n in manifest.get('conns', {})
                      if n not in holders and n not in clear and
                      n not in groups and (vips or n not in peer_side))
    conns = {}
    for name in expected:
        conn = status.get(name)
        conns[name] = conn.to_dict() if conn else {'loaded': False,
                                                   'established': False}
    missing = [n for n in expected if not conns[n]['established']]
    report = {'host': manifest.get('host'), 'expected': len(expected),
              'established': len(expected) - len(missing),
              'missing': missing, 'conns': conns,
              'auth': manifest.get('auth', 'psk')}
    problems = []
    if manifest.get('certs'):
        # auth cert, or certificates staged while still on psk
        report['certs'], problems = check_certs(
            manifest, certs or {}, ca_certs or {}, now)
    report['cert_problems'] = problems
    report['net_missing'] = [] if net is None else [
        '%s %s -> %s' % (d, src, dst) for src, dst, d in
        sorted(net_wanted(manifest, set(expected) | groups) - net)]
    # an exemption's passthrough conn has no SA: it must be routed (its
    # policies in the kernel), or its traffic would be dropped
    report['clear_missing'] = sorted(
        n for n in clear if n not in status or
        status[n].routing in ('', 'unrouted'))
    # a group conn has SAs only where pairs talk: each subnet of its
    # policy file must be routed (its trap), or its network is not covered
    routed = group_routed(status)
    report['groups'] = {n: sorted(routed.get(n, [])) for n in sorted(groups)}
    report['group_missing'] = sorted(n for n in groups if not routed.get(n))
    report['ok'] = not (missing or problems or report['net_missing'] or
                        report['clear_missing'] or report['group_missing'])
    return report


MANIFEST_MAX_BYTES = 16 * 1024 * 1024


def _names(value):
    return isinstance(value, list) and all(isinstance(n, str)
                                           for n in value)


def _address(text):
    """Whether TEXT is an IP address as ``ip`` prints it (canonical)."""
    try:
        return str(ipaddress.ip_address(text)) == text
    except ValueError:
        return False


def _subnet(text):
    """Whether TEXT is a subnet as ``ip`` prints it (canonical)."""
    try:
        return str(ipaddress.ip_network(text)) == text
    except ValueError:
        return False


def parse_manifest(text, what='manifest'):
    """A manifest's JSON text -> the manifest, its shape checked.

    What the node side reads: ``conns`` (name -> digest), ``vips`` (name ->
    {holder: [...], peer: [...], ...}), ``files`` (path -> mode).  Anything
    else is refused with one LibreswanError line.
    """
    try:
        manifest = json.loads(text)
    except ValueError:
        raise LibreswanError('%s: not JSON' % what)
    if not isinstance(manifest, dict):
        raise LibreswanError('%s: not a tripleo-ipsec manifest (not a '
                             'mapping)' % what)
    for key in ('conns', 'files', 'vips', 'net', 'clear', 'groups'):
        if not isinstance(manifest.get(key, {}), dict):
            raise LibreswanError('%s: not a tripleo-ipsec manifest (%s is '
                                 'not a mapping)' % (what, key))
    if not all(isinstance(k, str) and isinstance(v, str)
               for k, v in manifest.get('conns', {}).items()):
        raise LibreswanError('%s: not a tripleo-ipsec manifest (conns)'
                             % what)
    if not all(isinstance(v, list) and len(v) == 2 and _names(v) and
               _address(v[0]) and (_address(v[1]) or _subnet(v[1]))
               for v in manifest.get('net', {}).values()):
        raise LibreswanError('%s: not a tripleo-ipsec manifest (net)' % what)
    if not all(isinstance(v, dict) and all(
            isinstance(n, str) and isinstance(t, str) for n, t in v.items())
            for v in manifest.get('clear', {}).values()):
        raise LibreswanError('%s: not a tripleo-ipsec manifest (clear)'
                             % what)
    for name, vip in manifest.get('vips', {}).items():
        if not (isinstance(vip, dict) and _names(vip.get('holder', [])) and
                _names(vip.get('peer', []))):
            raise LibreswanError('%s: not a tripleo-ipsec manifest (VIP %r)'
                                 % (what, name))
    wanted = manifest.get('certs', {})
    if not (isinstance(wanted, dict) and
            isinstance(wanted.get('certs', {}), dict) and
            _names(wanted.get('trust', [])) and
            isinstance(wanted.get('margin_days', 0), int) and
            all(isinstance(c, dict) and isinstance(c.get('id'), str)
                for c in wanted.get('certs', {}).values())):
        raise LibreswanError('%s: not a tripleo-ipsec manifest (certs)'
                             % what)
    return manifest


def load_manifest(path):
    """The installed manifest: a regular file, bounded, its shape checked."""
    what = 'manifest %s' % path
    try:
        # O_NONBLOCK: a FIFO is refused below, not waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise LibreswanError('%s: %s' % (what, exc.strerror))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LibreswanError('%s: not a regular file' % what)
    with os.fdopen(fd, 'rb') as f:
        data = f.read(MANIFEST_MAX_BYTES + 1)
    if len(data) > MANIFEST_MAX_BYTES:
        raise LibreswanError('%s: larger than %d MiB'
                             % (what, MANIFEST_MAX_BYTES // 1024 // 1024))
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise LibreswanError('%s: not UTF-8 text' % what)
    return parse_manifest(text, what)


def verify_node(manifest_path, ctlsocket, vips=False,
                timeout=DEFAULT_TIMEOUT):
    """``verify`` on this node: its installed manifest and its pluto."""
    manifest = load_manifest(manifest_path)
    lw = Libreswan(ctlsocket, timeout)
    if manifest.get('certs'):
        return verify(manifest, lw.status(), vips, lw.certs(), lw.ca_certs(),
                      net=lw.net())
    return verify(manifest, lw.status(), vips, net=lw.net())


def missing_message(report):
    """One line for a report that is not ok: what is missing or wrong."""
    parts = []
    missing = report['missing']
    if missing:
        parts.append('%d of %d expected conns have no established IPsec SA: '
                     '%s' % (len(missing), report['expected'],
                             ', '.join(missing[:5]) +
                             (', ...' if len(missing) > 5 else '')))
    for problem in report.get('cert_problems', []):
        parts.append('%s: certificate %s on network %s%s: %s' % (
            report.get('host'), problem['cert'], problem['network'],
            ' (VIP %s)' % problem['vip'] if problem['vip'] else '',
            problem['reason']))
    net = report.get('net_missing', [])
    if net:
        parts.append('%s: %d kernel block policies of the safety net are '
                     'missing, so these pairs would go in clear whenever '
                     'pluto has no policy for them (rerun the deploy to '
                     'restore them): %s' % (
                         report.get('host'), len(net), ', '.join(net[:4]) +
                         (', ...' if len(net) > 4 else '')))
    groups = report.get('group_missing', [])
    if groups:
        parts.append('%s: %d group conns have no subnet routed, so their '
                     'networks\' traffic has no policy: %s' % (
                         report.get('host'), len(groups), ', '.join(groups)))
    clear = report.get('clear_missing', [])
    if clear:
        parts.append('%s: %d passthrough conns of the exemptions are not '
                     'loaded and routed, so their traffic is dropped: %s' % (
                         report.get('host'), len(clear), ', '.join(
                             clear[:4]) + (', ...' if len(clear) > 4
                                           else '')))
    return '; '.join(parts)
