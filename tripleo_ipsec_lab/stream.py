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

"""One long TCP stream, for the lab: did it survive, byte for byte?

``stream.py server ADDRESS PORT REPORT`` accepts one connection and reads
it to its end, checking every byte against the pattern; ``stream.py
client ADDRESS PORT REPORT`` sends the pattern in 4 KiB writes every 10 ms
until SIGTERM, then closes its side cleanly and waits for the server's
close.  Each writes REPORT (JSON): the bytes it moved and the error that
ended it, if any (``ConnectionResetError`` is a TCP reset).  Standard
library only: it runs in the lab's guest, inside a node.
"""

import json
import os
import signal
import socket
import sys
import time

CHUNK = 4096
INTERVAL_S = 0.01
PATTERN = bytes(range(256)) * 64        # 16 KiB; bytes n % 256


def _report(path, data):
    with open(path + '.tmp', 'w') as f:
        json.dump(data, f)
    os.rename(path + '.tmp', path)


def server(address, port, report):
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(1)
    _report(report, {'listening': True})
    conn, peer = listener.accept()
    received, error, corrupt = 0, None, 0
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            start = received % len(PATTERN)
            want = (PATTERN * (2 + len(data) // len(PATTERN)))[
                start:start + len(data)]
            if data != want:
                corrupt += 1
            received += len(data)
    except OSError as exc:
        error = '%s: %s' % (type(exc).__name__, exc)
    conn.close()
    _report(report, {'received': received, 'error': error,
                     'corrupt_reads': corrupt, 'peer': peer[0]})


def client(address, port, report):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sent, error = 0, None
    started = time.monotonic()
    try:
        sock = socket.create_connection((address, port), timeout=30)
        sock.settimeout(60)
        while not stop:
            offset = sent % len(PATTERN)
            chunk = (PATTERN * 2)[offset:offset + CHUNK]
            sock.sendall(chunk)
            sent += len(chunk)
            time.sleep(INTERVAL_S)
        sock.shutdown(socket.SHUT_WR)
        # the server closes once it has read everything
        while sock.recv(4096):
            pass
        sock.close()
    except OSError as exc:
        error = '%s: %s' % (type(exc).__name__, exc)
    _report(report, {'sent': sent, 'error': error,
                     'seconds': round(time.monotonic() - started, 1)})


if __name__ == '__main__':
    role, address, port, report = sys.argv[1:5]
    {'server': server, 'client': client}[role](address, int(port), report)
