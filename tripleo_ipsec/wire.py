"""What is on the wire: captures, probe traffic, cleartext counts.

A protected network must carry nothing but ESP, IKE (UDP 500/4500), ARP
and IPv6 neighbour discovery.  ``count`` asks tcpdump, the real tool, to
classify a capture; ``marker_hits`` counts a probe's marker in the bytes
of the packets a filter selects, so a payload sent in the clear is found
whatever its protocol.  ``Probe`` sends ICMP and TCP carrying the marker
and answers TCP from peers.

The standard library only: the Ansible role ships this module to the
nodes as module_utils (the probe tasks of the verification playbook), and
the lab uses it on the host for the captures it takes on its bridges.
"""

import os
import signal
import socket
import subprocess
import time

# what may cross a protected network; everything else is cleartext
ALLOWED = ('esp or udp port 500 or udp port 4500 or arp or '
           '(icmp6 and ip6[40] >= 133 and ip6[40] <= 137)')
MARKER = b'tripleo-ipsec:pb'   # 16 bytes: all that ping -p takes
PORT = 7655


class WireError(Exception):
    pass


def _tcpdump(args, timeout):
    try:
        return subprocess.run(['tcpdump'] + args, capture_output=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WireError('tcpdump: %s' % e)


def hosts_filter(addresses):
    """A tcpdump filter for packets to or from any of ADDRESSES."""
    return '(%s)' % ' or '.join('host %s' % a for a in sorted(addresses))


def _select(pcap, bpf, timeout):
    """The packets of PCAP matching BPF, as pcap bytes (tcpdump -w -)."""
    result = _tcpdump(['-r', pcap, '-w', '-'] + ([bpf] if bpf else []),
                      timeout)
    if result.returncode:
        raise WireError('tcpdump -r %s: %s' % (
            pcap, result.stderr.decode(errors='replace').strip()))
    return result.stdout


def _records(data):
    """How many packets pcap bytes hold (walks the record headers)."""
    if len(data) < 24:
        return 0
    order = 'little' if data[:4] in (b'\xd4\xc3\xb2\xa1',
                                     b'\x4d\x3c\xb2\xa1') else 'big'
    offset, n = 24, 0
    while offset + 16 <= len(data):
        offset += 16 + int.from_bytes(data[offset + 8:offset + 12], order)
        n += 1
    return n


def count(pcap, bpf='', timeout=60):
    """Packets in PCAP that match BPF."""
    return _records(_select(pcap, bpf, timeout))


def cleartext(pcap, bpf='', timeout=60):
    """Packets in PCAP that match BPF and are not ESP, IKE, ARP or ND."""
    clear = 'not (%s)' % ALLOWED
    return count(pcap, '(%s) and %s' % (bpf, clear) if bpf else clear,
                 timeout)


def marker_hits(pcap, bpf='', marker=MARKER, timeout=60):
    """How often MARKER appears in the packets of PCAP that match BPF."""
    return _select(pcap, bpf, timeout).count(marker)


def analyse(pcap, bpf='', marker=MARKER, timeout=60):
    """{packets, cleartext, marker} of the packets of PCAP matching BPF."""
    data = _select(pcap, bpf, timeout)
    return {'packets': _records(data),
            'cleartext': cleartext(pcap, bpf, timeout),
            'marker': data.count(marker)}


def capture(pcap, interface='any', snaplen=512):
    """Start tcpdump writing PCAP; returns the Popen once it listens."""
    err = pcap + '.log'
    with open(err, 'wb') as log:
        proc = subprocess.Popen(
            ['tcpdump', '-i', interface, '-nn', '-U', '-s', str(snaplen),
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


def stop(pid, timeout=10):
    """Stop a capture (or a listener) started earlier, by pid."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
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
