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

"""Continuous traffic while something changes, measured from the user's side.

While a key rotation, a certificate renewal or an auth switch runs, every
node pings every protected peer and every VIP of its networks every 10 ms
(``ping -D``, the marker in every packet), one long TCP stream runs on each
protected network between two nodes (``stream.py``), and every protected
network's bridge is captured.  Afterwards:

- a lost ping is an echo request whose reply never came: a sequence number
  missing below the last reply, or sent after it, less the at most
  ``IN_FLIGHT`` requests (20 ms) still on the wire when the pinger is
  stopped;
- a stream failed when either end saw an error (a reset is
  ``ConnectionResetError``), or the server got other bytes than were sent;
- cleartext is what ``wire.analyse`` counts on a protected bridge.
"""

import json
import os
import re
import time

from tripleo_ipsec.node import wire

INTERVAL = '0.01'
IN_FLIGHT = 2
STREAM_PORT = 7656
SEQ = re.compile(r' icmp_seq=(\d+) ')
SUMMARY = re.compile(r'(\d+) packets transmitted, (\d+) received')
HERE = os.path.dirname(os.path.abspath(__file__))


def losses(text):
    """A ping log -> (transmitted, received, lost, the lost seqs)."""
    seqs = sorted({int(m.group(1)) for m in SEQ.finditer(text)})
    summary = SUMMARY.search(text)
    if not summary:
        raise ValueError('the pinger printed no summary')
    sent = int(summary.group(1))
    if not seqs:
        return sent, 0, sent, list(range(1, sent + 1))
    got = set(seqs)
    inside = [s for s in range(1, seqs[-1]) if s not in got]
    tail = max(0, sent - seqs[-1] - IN_FLIGHT)
    lost = inside + list(range(seqs[-1] + 1, seqs[-1] + 1 + tail))
    return sent, len(got), len(lost), lost


def ranges(seqs):
    """[1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


class Traffic(object):
    """Pings, streams and captures over a whole phase of the lab."""

    def __init__(self, lab, tag, vips=True):
        self.lab, self.oc, self.tag = lab, lab.oc, tag
        self.dir = os.path.join(lab.work, 'traffic', tag)
        os.makedirs(self.dir, exist_ok=True)
        self.vips = vips
        self.pingers = []          # (pid, node, target, log)
        self.streams = []          # (network, client node, server node, ...)
        self.caps = {}

    def targets(self, host):
        """{address: label} HOST pings.

        Every pair once (its first end, by name, pings the other: the
        replies cross the pair both ways), and every VIP from the last
        node of its network that may not hold it (else the last one).
        The guest has one CPU: a pinger per pair and per direction drowns
        it, and the losses would be the guest's.
        """
        found = {}
        for net in self.oc.protected():
            if net not in host.addresses:
                continue
            for peer in self.oc.topology.members(net):
                if peer.name > host.name:
                    found[peer.addresses[net]] = '%s/%s' % (peer.name, net)
        for vip in self.oc.plan.vips if self.vips else ():
            others = [p for p in vip.peers if p not in vip.holders]
            if (others or list(vip.peers))[-1] == host.name:
                found[vip.address] = 'vip %s' % vip.name
        return found

    def start(self):
        self.caps = self.lab.capture(self.tag, self.oc.protected())
        hexmark = wire.MARKER.hex()
        for host in self.oc.topology.hosts:
            if host.name not in self.oc.nodes:
                continue
            for address, label in sorted(self.targets(host).items()):
                log = os.path.join(self.dir, 'ping-%s-%s.txt' % (
                    host.name, address))
                pid = self.lab.guest.spawn(
                    ['/bin/sh', '-c', 'exec ping -D -n -i %s -p %s %s > %s'
                     % (INTERVAL, hexmark, address, log)], netns=host.name)
                self.pingers.append((pid, host.name, label, log))
        for net in self.oc.protected():
            members = self.oc.topology.members(net)
            if len(members) < 2:
                continue
            server, client = members[0], members[-1]
            address = server.addresses[net]
            reports = [os.path.join(self.dir, 'stream-%s-%s.json'
                                    % (net, end))
                       for end in ('server', 'client')]
            spid = self.lab.guest.spawn(
                ['python3', os.path.join(HERE, 'stream.py'), 'server',
                 address, str(STREAM_PORT), reports[0]], netns=server.name)
            deadline = time.monotonic() + 30
            while not os.path.exists(reports[0]):
                if time.monotonic() > deadline:
                    raise RuntimeError('the stream server on %s did not '
                                       'listen' % server.name)
                time.sleep(0.05)
            cpid = self.lab.guest.spawn(
                ['python3', os.path.join(HERE, 'stream.py'), 'client',
                 address, str(STREAM_PORT), reports[1]], netns=client.name)
            self.streams.append((net, client.name, server.name, spid, cpid,
                                 reports))
        # every pinger has replies before anything changes
        time.sleep(2)

    def stop(self):
        """Stop it all; the phase's figures."""
        for pid, _, _, _ in self.pingers:
            self.lab.guest.signal(pid, 2)
        for _, _, _, _, cpid, _ in self.streams:
            self.lab.guest.signal(cpid, 15)
        for pid, _, _, _ in self.pingers:
            self.lab.guest.wait(pid, 60)
        for _, _, _, spid, cpid, _ in self.streams:
            self.lab.guest.wait(cpid, 90)
            self.lab.guest.wait(spid, 90)
        seen = self.lab.analyse(self.caps)
        pings = []
        for _, node, label, log in self.pingers:
            with open(log) as f:
                sent, received, lost, which = losses(f.read())
            pings.append({'from': node, 'to': label, 'sent': sent,
                          'received': received, 'lost': lost,
                          'lost_seqs': ranges(which)})
        streams = []
        for net, client, server, _, _, reports in self.streams:
            ends = {}
            for end, path in zip(('server', 'client'), reports):
                with open(path) as f:
                    ends[end] = json.load(f)
            ok = (not ends['server'].get('error') and
                  not ends['client'].get('error') and
                  ends['server'].get('corrupt_reads') == 0 and
                  ends['server'].get('received') == ends['client'].get('sent')
                  and ends['client'].get('sent', 0) > 0)
            streams.append({'network': net, 'client': client,
                            'server': server, 'ok': ok, **{
                                end: data for end, data in ends.items()}})
        return {
            'pingers': len(pings),
            'sent': sum(p['sent'] for p in pings),
            'lost': sum(p['lost'] for p in pings),
            'lossy': [p for p in pings if p['lost']],
            'streams': streams,
            'resets': sum('Reset' in (s['client'].get('error') or '') +
                          (s['server'].get('error') or '')
                          for s in streams),
            'capture': seen,
            'cleartext': sum(c['cleartext'] + c['marker']
                             for c in seen.values()),
        }
