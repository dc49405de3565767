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

"""What is on the wire: captures, probe traffic, cleartext counts.

A protected network must carry nothing but ESP, IKE (UDP 500/4500, and
ICMP errors about it), ARP and IPv6 neighbour discovery (with its MLD
reports).  ``count`` asks
tcpdump, the real tool, to classify a capture; ``marker_hits`` counts a
probe's marker in the bytes of the packets a filter selects, so a payload
sent in the clear is found whatever its protocol.  ``send`` sends ICMP and
TCP carrying the marker, ``listen`` answers the TCP.

The standard library only: the Ansible role ships this module to the
nodes as module_utils (the probe tasks of the verification playbook), and
the lab uses it on the host for the captures it takes on its bridges.
"""

import ipaddress
import os
import re
import signal
import socket
import subprocess
import time

# What may cross a protected network; everything else is cleartext.  IPv6
# neighbour discovery includes the MLD reports (link-local, behind a
# hop-by-hop header) by which a node joins ND's solicited-node groups.
ND = '(icmp6 and ip6[40] >= 133 and ip6[40] <= 137)'
MLD = ('((ip6 src net fe80::/10 or ip6 src ::) and ip6 dst net ff02::/16 '
       'and ip6[6] == 0 '
       'and ip6[40] == 58 and (ip6[48] == 143 or '
       '(ip6[48] >= 130 and ip6[48] <= 132)))')
# An ICMP error about an IKE datagram quotes that datagram, which is in the
# clear by design (a VIP's new holder answers IKE that way until its pluto
# listens on the VIP): destination unreachable, quoting an IP header (IPv4
# without options) and UDP from or to port 500 or 4500.
IKE_ERROR = ('(icmp and icmp[0] == 3 and icmp[8] == 0x45 and icmp[17] == 17 '
             'and (icmp[28:2] == 500 or icmp[28:2] == 4500 or '
             'icmp[30:2] == 500 or icmp[30:2] == 4500))')
IKE_ERROR6 = ('(ip6 and ip6[6] == 58 and ip6[40] == 1 and ip6[54] == 17 '
              'and (ip6[88:2] == 500 or ip6[88:2] == 4500 or '
              'ip6[90:2] == 500 or ip6[90:2] == 4500))')
ALLOWED = ('esp or udp port 500 or udp port 4500 or arp or %s or %s or %s '
           'or %s' % (ND, MLD, IKE_ERROR, IKE_ERROR6))
MARKER = b'tripleo-ipsec:pb'   # 16 bytes: all that ping -p takes
# IpsecClearExemptions: PROTO[/PORT][@NET] (options.exemption checks the
# rest), read again here since it reaches tcpdump's filter
EXEMPT_PROTOS = ('tcp', 'udp', 'icmp')
EXEMPTION = re.compile(r'(?P<proto>[a-z]+)(?:/(?P<port>[0-9]{1,5}))?'
                       r'(?:@(?P<net>[a-z][a-z0-9_]{0,62}))?')
PORT = 7655


class WireError(Exception):
    pass


def _tcpdump(args, timeout):
    try:
        return subprocess.run(['tcpdump'] + args, capture_output=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WireError('tcpdump: %s' % e)


def select(pcap, bpf='', timeout=60):
    """The packets of PCAP matching BPF, as pcap bytes (tcpdump -w -)."""
    result = _tcpdump(['-r', pcap, '-w', '-'] + ([bpf] if bpf else []),
                      timeout)
    if result.returncode and b'rejects all packets' in result.stderr:
        return b''      # the filter can match nothing at all
    if result.returncode:
        raise WireError('tcpdump -r %s: %s' % (
            pcap, result.stderr.decode(errors='replace').strip()))
    return result.stdout


def _frames(data):
    """Pcap bytes as (link type, [(time, frame bytes)]).

    The one walk of the record headers that counting and parsing share.
    """
    if len(data) < 24:
        return None, []
    magic = data[:4]
    order = 'little' if magic in (b'\xd4\xc3\xb2\xa1',
                                  b'\x4d\x3c\xb2\xa1') else 'big'
    fraction = 1e9 if magic in (b'\x4d\x3c\xb2\xa1',
                                b'\xa1\xb2\x3c\x4d') else 1e6
    frames, offset = [], 24
    while offset + 16 <= len(data):
        ts = (int.from_bytes(data[offset:offset + 4], order) +
              int.from_bytes(data[offset + 4:offset + 8], order) / fraction)
        length = int.from_bytes(data[offset + 8:offset + 12], order)
        frames.append((ts, data[offset + 16:offset + 16 + length]))
        offset += 16 + length
    return int.from_bytes(data[20:24], order), frames


def _records(data):
    """How many packets pcap bytes hold."""
    return len(_frames(data)[1])


# link type -> (offset of the ethertype, offset of the network header)
_LINKS = {1: (12, 14), 113: (14, 16), 276: (0, 20)}


def packets(data):
    """Every packet in pcap bytes, as (time, src, dst, protocol, payload).

    Addresses are normalised text and the protocol is IP's (50 is ESP);
    source, destination and protocol are None when the packet is not IP.
    Only the link and IP headers are read; tcpdump classifies.
    """
    link, frames = _frames(data)
    ether, l3 = _LINKS.get(link, (None, None))
    for ts, pkt in frames:
        src = dst = proto = None
        payload = pkt
        if ether is not None:
            kind, start = pkt[ether:ether + 2], l3
            if kind == b'\x81\x00' and ether == 12:     # one VLAN tag
                kind, start = pkt[16:18], l3 + 4
            if kind == b'\x08\x00' and len(pkt) >= start + 20:
                src, dst = (pkt[start + 12:start + 16],
                            pkt[start + 16:start + 20])
                proto = pkt[start + 9]
                payload = pkt[start + (pkt[start] & 0x0f) * 4:]
            elif kind == b'\x86\xdd' and len(pkt) >= start + 40:
                src, dst = (pkt[start + 8:start + 24],
                            pkt[start + 24:start + 40])
                proto = pkt[start + 6]
                payload = pkt[start + 40:]
        if src is not None:
            src = str(ipaddress.ip_address(src))
            dst = str(ipaddress.ip_address(dst))
        yield ts, src, dst, proto, payload


def sources(data):
    """Every packet's (time, link-layer source): 'aa:bb:..' or None.

    Ethernet captures only (a bridge's); in the order of ``packets``.
    """
    link, frames = _frames(data)
    for ts, pkt in frames:
        yield ts, (pkt[6:12].hex(':') if link == 1 and len(pkt) >= 14
                   else None)


def read(pcap):
    with open(pcap, 'rb') as f:
        return f.read()


def exempt_bpf(exemptions):
    """The tcpdump filter of what IpsecClearExemptions leaves in clear.

    EXEMPTIONS are the operator's ``PROTO[/PORT][@NET]`` texts (the network
    is the caller's business); '' for none.
    """
    parts = set()
    for text in exemptions:
        match = EXEMPTION.fullmatch(text)
        if not match or match.group('proto') not in EXEMPT_PROTOS:
            raise WireError('not an exemption: %r' % (text,))
        proto, port = match.group('proto'), match.group('port')
        if proto == 'icmp':
            parts.add('icmp or (ip6 and ip6[6] == 58)')
        else:
            parts.add('%s port %s' % (proto, port) if port else proto)
    return ' or '.join('(%s)' % p for p in sorted(parts))


def by_peer(pcap, groups, marker=MARKER, timeout=60, exempt=None):
    """Count per group of peers, in one tcpdump pass per exemption filter.

    GROUPS is {group: [address]}; returns {group: {packets, cleartext,
    marker}} over the packets to or from the group's addresses.  EXEMPT,
    {group: [exemption]}, names what may cross that group's network in
    clear (``exempt_bpf``): it is neither cleartext nor a marker hit.
    """
    index = {}
    for group, addresses in groups.items():
        for address in addresses:
            index[str(ipaddress.ip_address(address))] = group
    result = {g: {'packets': 0, 'cleartext': 0, 'marker': 0} for g in groups}

    def tally(data, key, only):
        for _, src, dst, _, payload in packets(data):
            for group in {index.get(src), index.get(dst)} & only:
                if key == 'marker':
                    result[group][key] += payload.count(marker)
                else:
                    result[group][key] += 1
    everything = read(pcap)
    tally(everything, 'packets', set(groups))
    filters = {}
    for group in groups:
        bpf = exempt_bpf((exempt or {}).get(group, ()))
        filters.setdefault(bpf, set()).add(group)
    for bpf, only in sorted(filters.items()):
        clear = 'not (%s%s)' % (ALLOWED, ' or ' + bpf if bpf else '')
        tally(select(pcap, clear, timeout), 'cleartext', only)
        tally(select(pcap, 'not (%s)' % bpf, timeout) if bpf else
              everything, 'marker', only)
    return result


def count(pcap, bpf='', timeout=60):
    """Packets in PCAP that match BPF."""
    return _records(select(pcap, bpf, timeout))


def cleartext(pcap, bpf='', timeout=60):
    """Packets in PCAP that match BPF and are not ESP, IKE, ARP or ND."""
    clear = 'not (%s)' % ALLOWED
    return count(pcap, '(%s) and %s' % (bpf, clear) if bpf else clear,
                 timeout)


def marker_hits(pcap, bpf='', marker=MARKER, timeout=60):
    """How often MARKER appears in the packets of PCAP that match BPF."""
    return select(pcap, bpf, timeout).count(marker)


def analyse(pcap, bpf='', marker=MARKER, timeout=60):
    """{packets, cleartext, marker} of the packets of PCAP matching BPF."""
    data = select(pcap, bpf, timeout)
    return {'packets': _records(data),
            'cleartext': cleartext(pcap, bpf, timeout),
            'marker': data.count(marker)}


def capture(pcap, interface='any', snaplen=512):
    """Start tcpdump writing PCAP; returns the Popen once it listens."""
    err = pcap + '.log'
    with open(err, 'wb') as log:
        proc = subprocess.Popen(
            ['tcpdump', '-i', interface, '-nn', '-U', '--immediate-mode',
             '-s', str(snaplen),
             '-w', pcap], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(err, 'rb') as f:
            if b'listening on' in f.read():
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    with open(err, 'rb') as f:
        raise WireError('tcpdump did not start: %s'
                        % f.read().decode(errors='replace').strip())


def _gone(pid):
    """True once PID has exited (a zombie nobody reaped has, too)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except (OSError, IndexError):
        return True


def stop(pid, timeout=10):
    """Stop a capture (or a listener) started earlier, by pid."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            pass
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)


def listen(port=PORT, lifetime=600):
    """Serve TCP on PORT (IPv4 and IPv6) for LIFETIME seconds.

    Reads what peers send, and closes.  Blocks: run it in a child.
    """
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(('::', port))
    sock.listen(64)
    sock.settimeout(1)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        try:
            conn, _ = sock.accept()
        except socket.timeout:
            continue
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass


def send(addresses, port=PORT, marker=MARKER, pings=2):
    """ICMP echo and a TCP message, both carrying MARKER, to every address.

    Returns {address: {'icmp': bool, 'tcp': bool}}.
    """
    pattern = marker[:16].hex()   # ping takes up to 16 bytes
    procs = {a: subprocess.Popen(
        ['ping', '-n', '-q', '-c', str(pings), '-i', '0.2', '-W', '2',
         '-p', pattern, a], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for a in addresses}
    result = {}
    for address in addresses:
        tcp = True
        try:
            with socket.create_connection((address, port), timeout=5) as s:
                s.sendall(marker)
        except OSError:
            tcp = False
        result[address] = {'tcp': tcp}
    for address, proc in procs.items():
        result[address]['icmp'] = proc.wait() == 0
    return result
