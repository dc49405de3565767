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
node probes every protected peer and every VIP of its networks every 10 ms
(``echo.py``: UDP echo probes carrying the wire marker, one process per
node that also answers its peers' probes), one long TCP stream runs on
each protected network between two nodes (``stream.py``), and every
protected network's bridge is captured.  Afterwards:

- a lost probe is one whose reply never came, by the end of a 2 s grace
  after the probers stopped sending;
- a stream failed when either end saw an error (a reset is
  ``ConnectionResetError``), or the server got other bytes than were sent;
- cleartext is what ``wire.analyse`` counts on a protected bridge.
"""

import json
import os
import signal
import time


INTERVAL = '0.01'
ECHO_PORT = 7657
STREAM_PORT = 7656
HERE = os.path.dirname(os.path.abspath(__file__))


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
        self.probers = []          # (pid, node, report)
        self.streams = []          # (network, client node, server node, ...)
        self.caps = {}

    def targets(self, host):
        """{address: label} HOST probes.

        Every pair once (its first end, by name, probes the other: the
        replies cross the pair both ways), and every VIP from the last
        node of its network that may not hold it (else the last one).
        The guest has one CPU: a prober per pair and per direction drowns
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
        for host in self.oc.topology.hosts:
            if host.name not in self.oc.nodes:
                continue
            # every node answers; each probes its own targets
            report = os.path.join(self.dir, 'echo-%s.json' % host.name)
            targets = sorted(self.targets(host).items())
            pid = self.lab.guest.spawn(
                ['python3', os.path.join(HERE, 'echo.py'), str(ECHO_PORT),
                 INTERVAL, report] + ['%s=%s' % t for t in targets],
                netns=host.name)
            self.probers.append((pid, host.name, report))
        # every node answers before any probes
        deadline = time.monotonic() + 60
        for _, node, report in self.probers:
            while not os.path.exists(report + '.ready'):
                if time.monotonic() > deadline:
                    raise RuntimeError('the prober on %s did not start'
                                       % node)
                time.sleep(0.05)
        for pid, _, _ in self.probers:
            self.lab.guest.signal(pid, signal.SIGUSR1)
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
        # every prober has replies before anything changes
        time.sleep(2)

    def stop(self):
        """Stop it all; the phase's figures."""
        for pid, _, _ in self.probers:
            self.lab.guest.signal(pid, 2)
        for _, _, _, _, cpid, _ in self.streams:
            self.lab.guest.signal(cpid, 15)
        for pid, _, _ in self.probers:
            self.lab.guest.wait(pid, 60)
        for _, _, _, spid, cpid, _ in self.streams:
            self.lab.guest.wait(cpid, 90)
            self.lab.guest.wait(spid, 90)
        seen = self.lab.analyse(self.caps)
        pings = []
        for _, node, report in self.probers:
            with open(report) as f:
                for t in json.load(f)['targets']:
                    pings.append({'from': node, 'to': t['label'],
                                  'sent': t['sent'],
                                  'received': t['received'],
                                  'lost': len(t['lost_seqs']),
                                  'lost_seqs': ranges(t['lost_seqs']),
                                  'send_errors': t['send_errors']})
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
            'probers': len(pings),
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
