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

"""10 ms echo probes between nodes, for the lab: which ones never came back?

``echo.py PORT INTERVAL REPORT [ADDRESS=LABEL ...]`` runs in one node: it
answers every probe that reaches UDP port PORT (IPv4 and IPv6), writes
``REPORT.ready`` once it does, and from SIGUSR1 on (every node answering
by then) it sends one probe to each ADDRESS every INTERVAL seconds.  On
SIGINT or SIGTERM
it stops sending, keeps answering and collecting for ``GRACE_S``, then
writes REPORT (JSON): per address, the probes sent, the replies received
and the sequence numbers that never had one.

Why not ping: an ICMP echo reply is sent by the kernel from its one ICMP
socket per network namespace, whose send buffer is fixed (2 x 64 KiB).  In
the lab's guest (one CPU) a deploy keeps the CPU busy, replies wait in the
backlog still charged to that socket, and the kernel drops the next ones
(IcmpOutErrors, IpOutDiscards: 129 in 30 s on one controller, with
nothing changing in IPsec).  Here both ends are sockets of our own with
large buffers: a late reply is late, not lost.  Every probe carries the
wire marker (``wire.MARKER``), so a capture sees any that leaves in clear.

Standard library only: it runs in the lab's guest, inside a node.
"""

import json
import os
import select
import signal
import socket
import struct
import sys
import time

GRACE_S = 2.0
BUFFER = 8 * 1024 * 1024
# SO_SNDBUFFORCE, SO_RCVBUFFORCE (Linux): root may exceed wmem_max/rmem_max
SNDBUFFORCE, RCVBUFFORCE = 32, 33
# IP_PKTINFO (not in Python's socket module), and IPv6's: a reply leaves
# from the address the probe came to (a VIP's, not the node's own)
IP_PKTINFO = 8
PKTINFO = {socket.AF_INET: (socket.IPPROTO_IP, IP_PKTINFO, IP_PKTINFO,
                            struct.Struct('=I4s4s')),
           socket.AF_INET6: (socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO,
                             socket.IPV6_PKTINFO, struct.Struct('=16sI'))}
MARKER = b'tripleo-ipsec:pb'            # tripleo_ipsec.node.wire.MARKER
REQUEST, REPLY = b'Q', b'A'
HEAD = struct.Struct('!HI')             # target index, sequence number


def _sockets(port):
    socks = {}
    for family, any_address in ((socket.AF_INET, '0.0.0.0'),
                                (socket.AF_INET6, '::')):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        level, recv, _, _ = PKTINFO[family]
        sock.setsockopt(level, recv, 1)
        sock.setsockopt(socket.SOL_SOCKET, SNDBUFFORCE, BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, RCVBUFFORCE, BUFFER)
        sock.bind((any_address, port))
        sock.setblocking(False)
        socks[family] = sock
    return socks


def reply_info(family, data):
    """The pktinfo a reply sends with: from the probe's destination."""
    info = PKTINFO[family][3]
    if family == socket.AF_INET:
        _, _, destination = info.unpack(data[:info.size])
        return info.pack(0, destination, bytes(4))
    destination, _ = info.unpack(data[:info.size])
    return info.pack(destination, 0)


def lost(sent, received):
    """Sequence numbers 1..SENT with no reply in RECEIVED."""
    return [s for s in range(1, sent + 1) if s not in received]


def run(port, interval, report, targets):
    stop, go = [], []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(time.monotonic()))
    signal.signal(signal.SIGUSR1, lambda *_: go.append(time.monotonic()))
    socks = _sockets(port)
    with open(report + '.ready', 'w'):
        pass
    dests = [(address, socks[socket.AF_INET6 if ':' in address
                             else socket.AF_INET]) for address, _ in targets]
    sent = [0] * len(targets)
    received = [set() for _ in targets]
    errors = [{} for _ in targets]
    answered = 0
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if stop and now - stop[0] > GRACE_S:
            break
        if not go:
            next_tick = now
        elif not stop and now >= next_tick:
            for i, (address, sock) in enumerate(dests):
                seq = sent[i] + 1
                try:
                    sock.sendto(REQUEST + HEAD.pack(i, seq) + MARKER,
                                (address, port))
                except OSError as exc:
                    # no reply can come: it counts as lost; say why
                    key = exc.strerror or str(exc)
                    errors[i][key] = errors[i].get(key, 0) + 1
                sent[i] = seq
            # a late tick sends at once, never a burst to catch up
            next_tick = max(next_tick + interval, now)
        wait = 0.2 if stop or not go else max(0.0,
                                              next_tick - time.monotonic())
        try:
            ready, _, _ = select.select(list(socks.values()), [], [], wait)
        except InterruptedError:
            continue
        for sock in ready:
            level, _, kind, info = PKTINFO[sock.family]
            while True:
                try:
                    data, anc, _, peer = sock.recvmsg(
                        2048, socket.CMSG_SPACE(info.size))
                except (BlockingIOError, InterruptedError):
                    break
                if data[:1] == REQUEST:
                    # from the address the probe was sent to
                    to = [(lvl, typ, reply_info(sock.family, d))
                          for lvl, typ, d in anc
                          if (lvl, typ) == (level, kind)]
                    try:
                        sock.sendmsg([REPLY + data[1:]], to, 0, peer[:2])
                        answered += 1
                    except OSError:
                        pass        # the prober counts it as lost
                elif data[:1] == REPLY and len(data) >= 1 + HEAD.size:
                    i, seq = HEAD.unpack_from(data, 1)
                    if i < len(dests) and peer[0] == dests[i][0]:
                        received[i].add(seq)
    out = {'answered': answered, 'targets': [
        {'address': address, 'label': label, 'sent': sent[i],
         'received': len(received[i]),
         'lost_seqs': lost(sent[i], received[i]),
         'send_errors': errors[i]}
        for i, (address, label) in enumerate(targets)]}
    with open(report + '.tmp', 'w') as f:
        json.dump(out, f)
    os.rename(report + '.tmp', report)


if __name__ == '__main__':
    port, interval, report = sys.argv[1:4]
    run(int(port), float(interval), report,
        [tuple(t.split('=', 1)) for t in sys.argv[4:]])
