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

"""The lab's scenario: deploy, prove, rerun, scale out, measure.

``run(work)`` boots the guest, deploys tripleo-ipsec on the simulated
overcloud through the real path and proves it on the wire; every phase
prints one progress line, and everything it saw goes into
``WORK/report.json`` (with the pcaps, pluto logs and playbook output next
to it).  ``report['ok']`` is true only when every check holds.
"""

import json
import os
import re
import sys
import threading
import time

from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import wire
from tripleo_ipsec import plan
from tripleo_ipsec_lab import failover as failover_mod
from tripleo_ipsec_lab import guest as guest_mod
from tripleo_ipsec_lab import outage
from tripleo_ipsec_lab import overcloud
from tripleo_ipsec_lab import rotation as rotation_mod

TOP = overcloud.TOP
VERIFY_PLAYBOOK = os.path.join(TOP, 'playbooks', 'tripleo-ipsec-verify.yaml')
# whack --trafficstatus: a Child SA's serial and conn (a group's instance
# for one peer: its template, instance number and the peer's address)
TRAFFIC = re.compile(r'#(\d+): "([^"]+)"(?:\[\d+\] \.\.\.(\S+?),)?')
LEGACY_PSK = 'tripleo-ipsec-lab-legacy-psk-not-a-secret-0123456789'
# The guest's fork+exec cost (ms) on the idle 2-core machine where the
# lab's limits were set (26 ms measured): a guest that forks slower gets
# proportionally longer limits.
REFERENCE_FORK_MS = 30
FORKS = 20
# A phase that runs longer than this says so, again and again.
HEARTBEAT_S = 10
# The outage target of a VIP move (a figure, bench/failover.py's target).
OUTAGE_TARGET_MS = 1000
# How long every expected SA may take to come up (scaled), ours and
# tripleo-ipsec's style alike; theirs took 46 s on an idle 2-core machine.
BRING_UP_LIMIT_S = 120
# mode group: how long every pair may take to have its SA once all talk
GROUP_UP_S = 60
# a pluto restarted on one node: how long every pair may take to talk again
RESTART_LIMIT_S = 60


def group_sa(group, peer):
    """How the lab names a group conn's SA with one peer."""
    return '%s %s' % (group, peer)


class Lab(object):

    def __init__(self, work, controllers=3, computes=2, timeout=1200,
                 out=sys.stdout, failover=0, networks=None,
                 baseline_window=None, cluster=False, rotation=False,
                 only=None, road_warrior=True, mode=None):
        self.work = os.path.abspath(work)
        # IpsecMode for the deploys (None: the option's default)
        self.mode = mode
        self.controllers = controllers
        self.computes = computes
        self.timeout = timeout
        self.out = out
        self.failover_moves = failover
        self.baseline_window = baseline_window
        self.cluster = cluster
        self.rotation = rotation
        self.road_warrior = road_warrior
        # the names of the optional phases to run, None for all (tests)
        self.only = only
        self.networks = networks
        self.report = {'work': self.work, 'phases': [], 'checks': []}
        self.guest = None
        self.oc = None
        # limits scale with the guest's measured fork cost (boot sets it)
        self.scale = 1.0
        self._t0 = time.monotonic()
        os.makedirs(os.path.join(self.work, 'pcap'), exist_ok=True)

    # -- report -----------------------------------------------------------
    def say(self, text):
        self.out.write('[%6.1fs] %s\n' % (time.monotonic() - self._t0, text))
        self.out.flush()

    def check(self, name, ok, **detail):
        self.report['checks'].append(dict(name=name, ok=bool(ok), **detail))
        self.say('  %s %s%s' % ('PASS' if ok else 'FAIL', name,
                                '' if ok else ' %s' % json.dumps(detail)))
        return ok

    def phase(self, name, func, *args):
        self.say('%s ...' % name)
        start = time.monotonic()
        done = threading.Event()

        def heartbeat():
            while not done.wait(HEARTBEAT_S):
                self.say('  %s: still running, %.0f s' % (
                    name, time.monotonic() - start))
        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            result = func(*args)
        finally:
            done.set()
            beat.join()
        seconds = round(time.monotonic() - start, 2)
        self.report['phases'].append({'name': name, 'seconds': seconds})
        self.say('%s done in %.1f s' % (name, seconds))
        return result

    def save(self):
        self.report['ok'] = bool(self.report['checks']) and all(
            c['ok'] for c in self.report['checks'])
        wire_checks = [c['ok'] for c in self.report['checks']
                       if 'only ESP' in c['name']]
        self.report['esp_only'] = bool(wire_checks) and all(wire_checks)
        self.report['seconds'] = round(time.monotonic() - self._t0, 1)
        path = os.path.join(self.work, 'report.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(self.report, f, indent=1, sort_keys=True)
        os.rename(path + '.tmp', path)
        return path

    # -- helpers ----------------------------------------------------------
    def all_sas(self):
        """{node: {conn name: newest child SA serial}}, in one request."""
        names = sorted(self.oc.nodes)
        script = ' '.join('echo "@@ %s"; %s --ctlsocket %s --trafficstatus;'
                          % (n, os.path.join(overcloud.LIBEXEC, 'whack'),
                             self.oc.nodes[n]['ctlsocket']) for n in names)
        out = self.guest.run(['sh', '-c', script], check=False).stdout
        result = {n: {} for n in names}
        node = None
        for line in out.splitlines():
            if line.startswith('@@ '):
                node = line[3:]
                continue
            for serial, conn, peer in TRAFFIC.findall(line):
                if peer:
                    # a group's SA with one peer: named after both
                    conn = group_sa(conn.split('#')[0], peer)
                result[node][conn] = max(int(serial),
                                         result[node].get(conn, 0))
        return result

    def expected(self, name):
        """The host-to-host SAs NAME has once its pairs have talked."""
        the_plan = self.oc.plan
        mine = the_plan.hosts[name]
        return {c.name for c in mine.conns if c.kind == plan.HOST} | {
            group_sa(g.name, address) for g in mine.groups
            for peer, address in the_plan.members[g.network]
            if peer != name and (':' in address) == (':' in g.left)}

    def talk_until_up(self, limit):
        """Mode group: every pair pings until every expected SA is up.

        Its SAs are negotiated on a pair's first packet.  Returns the
        seconds it took, or None after LIMIT.
        """
        start = time.monotonic()
        pids = self.traffic()
        try:
            while time.monotonic() - start < limit:
                sas = self.all_sas()
                if all(self.expected(n) <= set(sas[n])
                       for n in self.oc.nodes):
                    return round(time.monotonic() - start, 1)
                time.sleep(0.5)
            return None
        finally:
            self.stop_traffic(pids)

    def tcpdump(self, bridge, pcap, bpf=''):
        """Start tcpdump on a bridge of the guest; its pid once it listens."""
        pid = self.guest.spawn(['/bin/sh', '-c', 'exec tcpdump -i %s -nn -U '
                                '--immediate-mode -s 512 -w %s %s 2> %s.log'
                                % (bridge, pcap, bpf, pcap)])
        for _ in range(300):
            if not self.guest.run(['grep', '-q', 'listening on',
                                   pcap + '.log'], check=False).returncode:
                return pid
            time.sleep(0.05)
        raise RuntimeError('tcpdump on %s did not start' % bridge)

    def capture(self, tag, networks=None):
        """Start tcpdump on every network's bridge; {network: (pid, pcap)}."""
        caps = {}
        for net in sorted(networks or self.oc.bridges):
            pcap = os.path.join(self.work, 'pcap', '%s-%s.pcap' % (tag, net))
            caps[net] = (self.tcpdump(self.oc.bridges[net], pcap), pcap)
        return caps

    def analyse(self, caps):
        """Stop the captures; {network: {packets, cleartext, marker}}."""
        for pid, _ in caps.values():
            self.guest.signal(pid, 2)
        for pid, _ in caps.values():
            self.guest.wait(pid, 30)
        self.guest.run(['sync'])
        return {net: wire.analyse(pcap) for net, (_, pcap) in caps.items()}

    def wire_checks(self, tag, seen, marker_expected=True):
        protected = self.oc.protected()
        for net, counts in sorted(seen.items()):
            if net in protected:
                self.check('%s: only ESP on %s' % (tag, net),
                           counts['cleartext'] == 0 and counts['marker'] == 0
                           and counts['packets'] > 0, **counts)
            elif marker_expected:
                self.check('%s: cleartext seen on unprotected %s' % (tag, net),
                           counts['marker'] > 0, **counts)

    def traffic(self, among=None):
        """Pings with the marker, every node to every protected peer.

        AMONG limits the nodes that send and receive.  Returns the pids to
        stop.
        """
        hexmark = wire.MARKER.hex()
        among = set(among or self.oc.nodes)
        pids = []
        for host in self.oc.topology.hosts:
            if host.name not in among:
                continue
            targets = [p.addresses[net] for net in self.oc.protected()
                       if net in host.addresses
                       for p in self.oc.topology.members(net)
                       if p != host and p.name in among]
            if not targets:
                continue
            script = ' '.join('ping -q -n -i 0.2 -p %s %s >/dev/null &'
                              % (hexmark, a) for a in targets) + ' wait'
            pids.append(self.guest.spawn(['/bin/sh', '-c', script],
                                         netns=host.name))
        return pids

    def stop_traffic(self, pids):
        for pid in pids:
            self.guest.signal(pid, 15)
        for pid in pids:
            self.guest.wait(pid, 30)

    def deploy(self, tag, *args):
        rc, stats, data = self.oc.deploy(*args)
        with open(os.path.join(self.work, 'deploy-%s.json' % tag), 'w') as f:
            json.dump(data, f, indent=1)
        self.check('%s: ansible-playbook succeeded' % tag,
                   rc == 0 and not overcloud.failures(data), rc=rc,
                   failures=overcloud.failures(data))
        return stats, data

    # -- phases -----------------------------------------------------------
    def boot(self):
        self.guest = guest_mod.Guest(self.work, timeout=self.timeout).boot()
        self.report['guest_boot_ms'] = self.guest.boot_ms
        self.report['guest_fork_ms'] = fork_ms = self.fork_ms()
        self.scale = round(max(1.0, fork_ms / REFERENCE_FORK_MS), 2)
        self.report['limit_scale'] = self.scale
        self.say('  the guest forks and execs in %.0f ms (lab limits x%.2f)'
                 % (fork_ms, self.scale))

    def fork_ms(self):
        """What one fork+exec costs in the guest now, in ms.

        The best of 3 rounds, so a blip right after boot does not count;
        a machine that is busy all along still shows.
        """
        script = ('read -r a _ </proc/uptime; i=0; while [ $i -lt %d ]; '
                  'do /bin/true; i=$((i+1)); done; read -r b _ </proc/uptime;'
                  ' echo "$a $b"' % FORKS)
        rounds = []
        for _ in range(3):
            a, b = map(float,
                       self.guest.run(['sh', '-c', script]).stdout.split())
            rounds.append((b - a) * 1000 / FORKS)
        return min(rounds)

    def build(self):
        self.oc = overcloud.Overcloud(self.guest, self.work,
                                      self.controllers, self.computes,
                                      networks=self.networks)
        self.oc.build()
        if self.mode:
            self.oc.configure(IpsecMode=self.mode)
        self.report['mode'] = self.oc.plan.mode
        self.report['mode_reason'] = self.oc.plan.mode_reason
        self.report['nodes'] = sorted(self.oc.nodes)
        self.report['networks'] = {
            'protected': self.oc.protected(),
            'unprotected': sorted(set(self.oc.networks) -
                                  set(self.oc.protected()))}
        self.report['vips'] = self.oc.outputs['VipMap']

    def first_deploy(self):
        self.deploy('deploy')
        if self.oc.plan.mode == plan.GROUP:
            took = self.talk_until_up(GROUP_UP_S * self.scale)
            self.report['group_sas_up_s'] = took
            self.say('  mode group: every pair has its SA %s' % (
                'after %.1f s of traffic' % took if took is not None else
                'NOT after %d s of traffic' % (GROUP_UP_S * self.scale)))
        self.report['sas'] = self.all_sas()
        missing = {n: sorted(self.expected(n) - set(sas))
                   for n, sas in self.report['sas'].items()}
        count = sum(len(self.expected(n)) for n in self.oc.nodes)
        self.report['expected_child_sas'] = count
        self.check('every expected pair x network has a Child SA',
                   not any(missing.values()), expected=count,
                   missing={n: m for n, m in missing.items() if m})

    def prove(self, tag='verify'):
        """The shared verification playbook, with bridge captures."""
        caps = self.capture(tag)
        rc, stats, data = overcloud.run_playbook(
            VERIFY_PLAYBOOK, self.oc.inventory(), self.work,
            '-e', 'tripleo_ipsec_probe_dir=%s/probe/{{ inventory_hostname }}'
            % self.work)
        seen = self.analyse(caps)
        with open(os.path.join(self.work, '%s-playbook.json' % tag),
                  'w') as f:
            json.dump(data, f, indent=1)
        results = overcloud.by_task(data)
        verified = results.get('Check every expected conn has an IPsec SA',
                               {})
        probed = results.get('Count cleartext on each network', {})
        # the first run's keys as they were; a later run's under its tag
        key = '' if tag == 'verify' else tag + '_'
        self.report[tag] = {
            h: {k: r[0].get(k) for k in ('expected', 'established',
                                         'missing', 'auth', 'cert_problems')}
            for h, r in verified.items()}
        self.report[key + 'probe'] = {h: r[0].get('networks')
                                      for h, r in probed.items()}
        self.report[key + 'capture'] = seen
        self.check('%s playbook passed on every node' % tag,
                   rc == 0 and not overcloud.failures(data) and
                   set(verified) == set(self.oc.nodes) and
                   set(probed) == set(self.oc.nodes),
                   rc=rc, failures=overcloud.failures(data))
        self.wire_checks(tag, seen)

    def rerun(self, tag='rerun'):
        before = self.all_sas()
        caps = self.capture(tag, self.oc.protected())
        pids = self.traffic()
        stats, data = self.deploy(tag)
        self.stop_traffic(pids)
        seen = self.analyse(caps)
        after = self.all_sas()
        changed = {h: s['changed'] for h, s in stats.items()}
        self.report[tag] = {'changed': changed, 'capture': seen}
        self.check('%s: changed=0 on every node' % tag,
                   not any(changed.values()), changed=changed)
        # {node: {SA: [serial before, serial after]}} for those that moved
        moved = {h: {c: [before[h].get(c), after[h].get(c)]
                     for c in set(before[h]) | set(after[h])
                     if before[h].get(c) != after[h].get(c)}
                 for h in before}
        self.check('%s: SA serials unchanged' % tag, before == after,
                   moved={h: m for h, m in moved.items() if m})
        self.wire_checks(tag, seen, marker_expected=False)

    def exemptions(self):
        """IpsecClearExemptions tcp/22 through the deploy, on the wire.

        The rerun that adds the passthrough conns replaces none (the same
        SA serials) and every node routes them; then one controller sends
        the probe's marker by TCP to a peer's port 22 and to the probe's
        port, and pings it, on every protected network: the capture on
        each bridge shows the marker in clear on port 22 and nowhere else.
        The exemption stays for the phases after this one (nothing else
        in the lab uses port 22).
        """
        before = self.all_sas()
        self.oc.configure(IpsecClearExemptions=['tcp/22'])
        self.deploy('exempt')
        self.check('exemptions: the rerun replaced no conn (SA serials '
                   'unchanged)', before == self.all_sas())
        routed = {}
        for name in self.oc.nodes:
            status = libreswan.parse_status(
                self.oc.whack(name, '--status').stdout)
            routed[name] = sorted(
                c.name for c in self.oc.plan.hosts[name].clear
                if c.name not in status or
                status[c.name].routing in ('', 'unrouted'))
        self.check('exemptions: every node routes its passthrough conns',
                   not any(routed.values()), missing=routed)
        protected = self.oc.protected()
        hosts = {h.name: h for h in self.oc.topology.hosts}
        sender, peer = sorted(n for n in hosts
                              if set(protected) <= set(hosts[n].addresses))[:2]
        targets = [hosts[peer].addresses[net] for net in protected]
        python = ['/usr/bin/env', 'PYTHONPATH=' + guest_mod.TOP,
                  guest_mod.PYTHON, '-c']
        caps = self.capture('exempt', protected)
        listeners = [self.guest.spawn(python + [
            'from tripleo_ipsec.node import wire; wire.listen(%d, 60)'
            % port], netns=peer) for port in (22, wire.PORT)]
        sent = []
        try:
            self.guest.run(['/bin/sh', '-c', 'for i in $(seq 300); do '
                            'ss -Hltn "( sport = :22 or sport = :%d )" | '
                            'grep -c . | grep -qx 2 && exit 0; sleep 0.1; '
                            'done; exit 1' % wire.PORT], netns=peer)
            for port in (22, wire.PORT):
                sent.append(json.loads(self.guest.run(python + [
                    'import json; from tripleo_ipsec.node import wire; '
                    'print(json.dumps(wire.send(%r, %d)))'
                    % (targets, port)], netns=sender).stdout))
        finally:
            for pid in listeners:
                self.guest.signal(pid)
                self.guest.wait(pid, 30)
            self.analyse(caps)
        seen = {}
        for net, (_, pcap) in sorted(caps.items()):
            seen[net] = {
                'ssh_marker': wire.marker_hits(pcap, 'tcp port 22'),
                'other_marker': wire.marker_hits(pcap, 'not tcp port 22'),
                'other_cleartext': wire.cleartext(pcap, 'not tcp port 22'),
                'esp': wire.count(pcap, 'esp')}
        self.report['exemptions'] = {'sender': sender, 'peer': peer,
                                     'sent': sent, 'capture': seen}
        self.check('exemptions: every message reached the peer',
                   all(r == {'icmp': True, 'tcp': True}
                       for s in sent for r in s.values()), sent=sent)
        for net, counts in seen.items():
            self.check('exemptions: on %s, TCP port 22 in clear and nothing '
                       'else' % net, counts['ssh_marker'] > 0 and
                       counts['other_marker'] == 0 and
                       counts['other_cleartext'] == 0 and
                       counts['esp'] > 0, **counts)

    def mtu(self):
        """The plan's inner MTU against the kernel's, on every network.

        The deploy's inventory gives each role its networks' MTU (as
        tripleo-common does from network_data), the plan computes what ESP
        leaves of it; from one controller to another, on every protected
        network, ``ping -M do`` with the plan's largest payload crosses
        (in ESP: the capture), one byte more is refused by the sender's
        kernel, which names the plan's inner MTU.
        """
        with open(os.path.join(self.work, 'deploy-deploy.json')) as f:
            rendered = [r['mtu'] for results in overcloud.by_task(
                json.load(f)).get("Render every node's IPsec bundle",
                                  {}).values() for r in results if 'mtu' in r]
        # JSON's keys are text: the lab's plan, as the deploy reported it
        mine = json.loads(json.dumps(self.oc.plan.mtu))
        self.check('mtu: the deploy rendered with the networks\' MTU from '
                   'the inventory', rendered == [mine], rendered=rendered)
        protected = self.oc.protected()
        hosts = {h.name: h for h in self.oc.topology.hosts}
        sender, peer = sorted(n for n in hosts
                              if set(protected) <= set(hosts[n].addresses))[:2]
        caps = self.capture('mtu', protected)
        figures = {}
        try:
            for net in protected:
                target = hosts[peer].addresses[net]
                family = 'ipv6' if ':' in target else 'ipv4'
                entry = self.oc.plan.mtu[net]
                size = entry[family]['ping']
                got = {}
                for tag, payload in (('crossed', size), ('over', size + 1)):
                    result = self.guest.run(
                        ['ping', '-M', 'do', '-c', '3', '-i', '0.2', '-W',
                         '2', '-s', str(payload), target], netns=sender,
                        check=False)
                    match = re.search(r'(\d+) received', result.stdout)
                    got[tag] = int(match.group(1)) if match else 0
                    got[tag + '_says'] = sorted(set(re.findall(
                        r'message too long, mtu[=:] ?\d+',
                        result.stdout + result.stderr)))
                figures[net] = dict(got, link=entry['link'],
                                    inner=entry[family]['inner'],
                                    payload=size)
        finally:
            seen = self.analyse(caps)
        self.report['mtu'] = {'sender': sender, 'peer': peer,
                              'networks': figures, 'capture': seen}
        for net, fig in sorted(figures.items()):
            self.check('mtu: on %s (link %d), ping -M do -s %d crosses, one '
                       'byte more is refused at mtu %d'
                       % (net, fig['link'], fig['payload'], fig['inner']),
                       fig['crossed'] == 3 and fig['over'] == 0 and
                       fig['over_says'] == ['message too long, mtu=%d'
                                            % fig['inner']], **fig)
        self.wire_checks('mtu', seen, marker_expected=False)

    def restart(self):
        """One compute's pluto restarted under traffic with every peer.

        Every peer pings the compute, and the compute every peer, on every
        protected network they share (every 100 ms, the probe's marker),
        under a capture; the compute's pluto stops and starts again as the
        ipsec service does with tripleo-ipsec's drop-in (overcloud's
        service_lines; mode mesh: shut down, its peers get a Delete, its
        own SAs and policies go, the safety net stays; mode group: shut
        down leaving its state, its outbound SAs removed once the next
        pluto has routed its group conns), loading its conns from its
        config.  Nothing
        may cross in clear; each pair's figure is the time from the start
        to steady replies again (outage.steady), the phase's the slowest
        pair's.
        """
        node = sorted(n for n in self.oc.nodes if 'compute' in n)[0]
        hosts = {h.name: h for h in self.oc.topology.hosts}
        flows = []
        # the networks it is on: the capture watches those
        nets = [n for n in self.oc.protected() if n in hosts[node].addresses]
        for net in nets:
            for peer in self.oc.topology.members(net):
                if peer.name != node:
                    flows.append((peer.name, node, net))
                    flows.append((node, peer.name, net))
        folder = os.path.join(self.work, 'restart')
        os.makedirs(folder, exist_ok=True)
        caps = self.capture('restart', nets)
        logs, pids = [], []
        for src, dst, net in flows:
            log = os.path.join(folder, '%s-%s-%s.txt' % (src, dst, net))
            logs.append(log)
            pids.append(self.guest.spawn(
                ['/bin/sh', '-c', 'exec ping -D -n -i 0.1 -W 1 -p %s %s > %s'
                 % (wire.MARKER.hex(), hosts[dst].addresses[net], log)],
                netns=self.oc.nodes[src]['netns']))
        took, service = {}, {}
        try:
            time.sleep(2)
            service = self.oc.stop_pluto(node, as_service=True)
            time.sleep(2)
            started = time.time()
            service['ExecStartPost'] = self.oc.start_pluto(node,
                                                           as_service=True)
            # steady from here on: in mode group the old SAs carry the
            # traffic until the drop-in's ExecStartPost removes them
            posted = time.time()
            limit = RESTART_LIMIT_S * self.scale
            while time.time() - started < limit:
                for (src, dst, net), log in zip(flows, logs):
                    key = '%s -> %s (%s)' % (src, dst, net)
                    if key in took:
                        continue
                    with open(log) as f:
                        at = outage.steady(outage.replies(f.read()), posted)
                    if at is not None:
                        took[key] = round(at - started, 1)
                if len(took) == len(flows):
                    break
                time.sleep(0.5)
        finally:
            self.stop_traffic(pids)
            seen = self.analyse(caps)
        waiting = sorted('%s -> %s (%s)' % f for f in flows
                         if '%s -> %s (%s)' % f not in took)
        slowest = max(took.values()) if took else None
        self.report['restart'] = {'node': node, 'recovered_s': took,
                                  'never': waiting, 'slowest_s': slowest,
                                  'mode': self.oc.plan.mode,
                                  'service': service,
                                  'capture': seen}
        self.say('  %s: every pair talks again %s after its pluto started'
                 % (node, '%.1f s' % slowest if not waiting and took
                    else 'NOT (%d of %d)' % (len(took), len(flows))))
        self.check('pluto restart on %s: every pair with it talks again, '
                   'both ways, within %d s' % (node, RESTART_LIMIT_S),
                   not waiting and bool(took), never=waiting,
                   slowest_s=slowest)
        self.wire_checks('pluto restart', seen, marker_expected=False)

    def scale_out(self):
        before = self.all_sas()
        self.oc.computes += 1
        self.oc.refresh()
        new = self.oc.build()
        # the deployed nodes talk all through the scale-out deploy; the new
        # node has no conns before it, so it talks once it is deployed
        caps = self.capture('scale-out', self.oc.protected())
        pids = self.traffic(before)
        self.deploy('scale-out')
        self.stop_traffic(pids)
        if self.oc.plan.mode == plan.GROUP:
            # the new node's pairs negotiate on their first packets
            self.report['scale_out_group_up_s'] = self.talk_until_up(
                GROUP_UP_S * self.scale)
        else:
            pids = self.traffic()
            time.sleep(2)
            self.stop_traffic(pids)
        seen = self.analyse(caps)
        after = self.all_sas()
        missing = {n: sorted(self.expected(n) - set(after[n]))
                   for n in self.oc.nodes}
        # {node: {SA: [newest child serial before, after]}}
        renegotiated = {n: {c: [s, after[n].get(c)] for c, s in
                            sorted(sas.items()) if after[n].get(c) != s}
                        for n, sas in before.items()}
        self.report['scale_out'] = {'new': new, 'capture': seen,
                                    'renegotiated': renegotiated}
        self.check('scale-out: %s has tunnels to all its peers' % new[0],
                   not missing[new[0]] and after[new[0]],
                   missing=missing[new[0]], sas=len(after[new[0]]))
        self.check('scale-out: every node has all its Child SAs',
                   not any(missing.values()),
                   missing={n: m for n, m in missing.items() if m})
        self.check('scale-out: no other SA renegotiated',
                   not any(renegotiated.values()),
                   renegotiated={n: m for n, m in renegotiated.items() if m})
        self.wire_checks('scale-out', seen, marker_expected=False)

    # -- key rotation under traffic ---------------------------------------
    def rotate(self):
        rot = rotation_mod.Rotation(self)
        result = self.report['rotation'] = {}
        rot.vips('start')
        try:
            # the guest's noise, the figures before this change, then the
            # real deploy's
            result['control'] = rot.window('rotate-control', rot.control)
            result['baseline'] = rot.window('rotate-baseline',
                                            lambda: rot.baseline(1))
            result['psk'] = rot.window('rotate-psk', lambda: rot.psk(2))
            result['psk_fresh_ike_auth'] = rot.fresh_ike_auth()
            # psk -> cert: the lab's CA (a certmonger in every node) first
            self.oc.enable_certs()
            result['stage_certs'] = rot.window('stage-certs',
                                               rot.stage_certs)
            result['to_cert'] = rot.window('to-cert', rot.to_cert)
            result['cert_fresh_ike_auth'] = rot.fresh_ike_auth()
            result['renew'] = rot.window('renew-certs', rot.renew)
            result['renew_fresh_ike_auth'] = rot.fresh_ike_auth()
        finally:
            rot.vips('stop')
        self.rotation_checks(result)

    def rotation_checks(self, result):
        base, psk = result['baseline'], result['psk']
        to_cert, renew = result['to_cert'], result['renew']
        stage = result['stage_certs']
        for tag, fig in (('control', result['control']),
                         ('baseline', base), ('psk', psk),
                         ('stage certs', stage),
                         ('psk -> cert', to_cert), ('renew', renew)):
            self.say('  %s: %d of %d probes lost (%d probers), %d cleartext, '
                     '%d TCP resets, streams %s' % (
                         tag, fig['lost'], fig['sent'], fig['probers'],
                         fig['cleartext'], fig['resets'],
                         'ok' if all(s['ok'] for s in fig['streams'])
                         else 'FAILED'))
        # the measure must be able to fail: the old epoch bump replaced
        # every conn, and the probes see it
        self.check('rotation baseline (the old epoch bump, every conn '
                   'replaced): the probes see losses', base['lost'] > 0,
                   lost=base['lost'], cleartext=base['cleartext'])
        # no probe lost: in the control (the instrument is quiet: nothing
        # changes, the same deploy runs), and in every change that must
        # cost nothing.  psk -> cert replaces conns (below): a figure.
        for tag, key in (('the same deploy, nothing changed', 'control'),
                         ('psk rotation', 'psk'),
                         ('certificates staged on psk', 'stage_certs'),
                         ('certificate renewal', 'renew')):
            fig = result[key]
            self.check('%s: 0 of %d probes lost' % (tag, fig['sent']),
                       fig['lost'] == 0, lost=fig['lost'],
                       lossy=fig['lossy'][:3])
        noise = result['control']['lost']
        replaced = {h: c for h, c in psk['detail']['replaced'].items() if c}
        self.check('psk rotation (IpsecKeyEpoch through the deploy): 0 '
                   'cleartext, every TCP stream intact, no conn replaced, no '
                   'Child SA renegotiated',
                   psk['cleartext'] == 0 and
                   psk['streams'] and all(s['ok'] for s in psk['streams'])
                   and not replaced and
                   psk['sas_before'] == psk['sas_after'],
                   lost=psk['lost'], control_lost=noise,
                   lossy=psk['lossy'][:3],
                   cleartext=psk['cleartext'], replaced=replaced,
                   streams=psk['streams'])
        self.check('psk rotation: every node staged its new keys and reread '
                   'them in the one task after',
                   psk['detail']['staged'] == sorted(self.oc.nodes) and
                   psk['detail']['reread_on'] == sorted(self.oc.nodes),
                   **psk['detail'])
        fresh = result['psk_fresh_ike_auth']
        self.check('psk rotation: a fresh IKE_AUTH on every pair passes with '
                   'the new keys', not fresh['missing'] and all(
                       how.startswith('authby=secret')
                       for how in fresh['authenticated'].values()),
                   missing=fresh['missing'])
        replaced = {h: c for h, c in stage['detail']['replaced'].items()
                    if c}
        self.check('certificates staged on psk: issued on every node, 0 '
                   'cleartext, every TCP stream intact, no conn replaced, '
                   'no Child SA renegotiated',
                   stage['cleartext'] == 0 and stage['streams'] and
                   all(st['ok'] for st in stage['streams']) and
                   not replaced and
                   stage['sas_before'] == stage['sas_after'] and
                   sorted(h for h, r in stage['detail']['requested'].items()
                          if r) == sorted(self.oc.nodes),
                   lost=stage['lost'], control_lost=noise,
                   cleartext=stage['cleartext'], replaced=replaced,
                   requested=stage['detail']['requested'])
        # psk -> cert replaces every conn (libreswan 4.10 cannot change a
        # live conn's authentication, nor make before break): its losses
        # are a figure; what must hold is no cleartext and no broken stream
        self.check('psk -> cert: 0 cleartext, every TCP stream intact, '
                   'the staged certificates used (none requested again)',
                   to_cert['cleartext'] == 0 and to_cert['streams'] and
                   all(st['ok'] for st in to_cert['streams']) and
                   not any(to_cert['detail']['requested'].values()),
                   lost=to_cert['lost'], cleartext=to_cert['cleartext'],
                   streams=to_cert['streams'], **to_cert['detail'])
        fresh = result['cert_fresh_ike_auth']
        self.check('psk -> cert: a fresh IKE_AUTH on every pair passes with '
                   'certificates', not fresh['missing'] and all(
                       'certificate' in how
                       for how in fresh['authenticated'].values()),
                   missing=fresh['missing'], sample=sorted(
                       fresh['authenticated'].values())[:2])
        renewed = renew['detail']['renewed']
        held = renew['detail']['held_after']
        self.check('certificate renewal (getcert resubmit on every node): 0 '
                   'cleartext, every TCP stream intact, no Child SA '
                   'renegotiated, and every pluto holds the new '
                   'certificates (certmonger\'s post-save reread them)',
                   renew['cleartext'] == 0 and
                   renew['streams'] and
                   all(st['ok'] for st in renew['streams']) and
                   renew['sas_before'] == renew['sas_after'] and
                   all(renewed[n] and renewed[n] == sorted(held[n])
                       for n in renewed),
                   lost=renew['lost'], control_lost=noise,
                   lossy=renew['lossy'][:3],
                   cleartext=renew['cleartext'], renewed=renewed,
                   not_renewed=renew['detail'].get('not_renewed'))
        fresh = result['renew_fresh_ike_auth']
        stale = renew['detail']['not_reloaded']
        self.check('certificate renewal: every conn signs with its renewed '
                   'certificate (pluto reloaded each one in use), and a '
                   'fresh IKE_AUTH on every pair passes with certificates',
                   not stale and not fresh['missing'] and all(
                       'certificate' in how
                       for how in fresh['authenticated'].values()),
                   not_reloaded=stale, missing=fresh['missing'])

    # -- bring-up time: ours against tripleo-ipsec's style ---------------
    def restart_plutos(self, config=None, secrets=None):
        names = sorted(self.oc.nodes)
        self.oc.parallel(self.oc.stop_pluto, names)
        start_at = time.monotonic()
        self.oc.parallel_start(names, config, secrets)
        return start_at

    def wait_up(self, expected, start_at, limit):
        """ms until every EXPECTED SA is up, or None after LIMIT s."""
        while time.monotonic() - start_at < limit:
            sas = self.all_sas()
            if all(expected[n] <= set(sas[n]) for n in expected):
                return int((time.monotonic() - start_at) * 1000)
            time.sleep(0.2)
        return None

    def legacy_files(self):
        """Write tripleo-ipsec's style of host-to-host conns.

        Tunnel mode, addresses as ids, one PSK, auto=start on both ends,
        the default _updown; our proposals, so crypto is not the
        difference.  Returns {node: expected conn names}.
        """
        opts = self.oc.plan.options
        expected = {}
        for host in self.oc.topology.hosts:
            lines = ['config setup', '\tuniqueids=no', '']
            expected[host.name] = set()
            for net in self.oc.protected():
                if net not in host.addresses:
                    continue
                for i, peer in enumerate(self.oc.topology.members(net)):
                    if peer == host:
                        continue
                    name = 'overcloud-private-node-to-node-%s-ip-%d' % (
                        net, i)
                    expected[host.name].add(name)
                    lines += ['conn %s' % name,
                              '\tleft=%s' % host.addresses[net],
                              '\tleftid=%s' % host.addresses[net],
                              '\tright=%s' % peer.addresses[net],
                              '\trightid=%s' % peer.addresses[net],
                              '\tauthby=secret', '\ttype=tunnel',
                              '\tike=%s' % opts.ike,
                              '\tesp=%s' % opts.esp,
                              '\tretransmit-timeout=2s',
                              '\tfailureshunt=drop', '\tauto=start', '']
            etc = '/etc/netns/%s/ipsec.d/legacy' % host.name
            self.guest.run(['sh', '-c', 'mkdir -p %s && cat > %s/ipsec.conf '
                            '&& printf \'%%s\\n\' \': PSK "%s"\' > '
                            '%s/ipsec.secrets && chmod 600 %s/ipsec.secrets'
                            % (etc, etc, LEGACY_PSK, etc, etc)],
                           stdin='\n'.join(lines) + '\n')
        return expected

    def bring_up(self):
        ours = {n: self.expected(n) for n in self.oc.nodes}
        initiators = {n: [c.name for c in self.oc.plan.hosts[n].conns
                          if c.kind == plan.HOST and c.initiator]
                      for n in self.oc.nodes}
        start_at = self.restart_plutos()
        initiate_at = time.monotonic()

        def initiate(name):
            self.guest.run(['sh', '-c', ' '.join(
                '%s --ctlsocket %s --name %s --initiate --asynchronous '
                '>/dev/null;' % (os.path.join(overcloud.LIBEXEC, 'whack'),
                                 self.oc.nodes[name]['ctlsocket'], c)
                for c in initiators[name]) or 'true'],
                netns=self.oc.nodes[name]['netns'])
        self.oc.parallel(initiate, sorted(self.oc.nodes))
        limit = BRING_UP_LIMIT_S * self.scale
        ours_ms = self.wait_up(ours, start_at, limit)
        from_initiate = int((time.monotonic() - initiate_at) * 1000)
        self.say('  ours: %s' % ('%d ms' % ours_ms if ours_ms else
                                 'not up in %d s' % limit))
        legacy = self.legacy_files()
        start_at = self.restart_plutos('/etc/ipsec.d/legacy/ipsec.conf',
                                       '/etc/ipsec.d/legacy/ipsec.secrets')
        legacy_ms = self.wait_up(legacy, start_at, limit)
        self.say('  tripleo-ipsec style: %s' % (
            '%d ms' % legacy_ms if legacy_ms else 'not up in %d s' % limit))
        # a baseline that is not up by the limit has the limit as its
        # figure, and the ratio is at most ours over that
        ratio = (round(ours_ms / (legacy_ms or limit * 1000), 3)
                 if ours_ms else None)
        self.report['bring_up'] = {
            'child_sas': sum(len(c) for c in ours.values()) // 2,
            # from launching every node's pluto to every Child SA up;
            # theirs initiate as they load (auto=start), ours once every
            # pluto listens, as the role's task order gives
            'ours_ms': ours_ms, 'tripleo_ipsec_style_ms': legacy_ms,
            'limit_ms': int(limit * 1000),
            'ours_from_first_initiate_ms': from_initiate,
            'ratio': ratio, 'ratio_is_upper_bound': legacy_ms is None}
        self.check('bring-up: ours at most half of tripleo-ipsec style',
                   ratio is not None and ratio <= 0.5,
                   **self.report['bring_up'])
        # the lab ends here, with tripleo-ipsec style conns loaded

    def iperf(self):
        a, b = [h for h in self.oc.topology.hosts if h.vip_holder][:2]
        protected = 'internal_api'
        clear = next(n for n in ('tenant', 'external')
                     if n in a.addresses and n in b.addresses)
        server = self.guest.spawn(['iperf3', '-s'], netns=b.name)
        time.sleep(1)
        result = {}
        for tag, net in (('esp', protected), ('plaintext', clear)):
            out = self.guest.run(['iperf3', '-c', b.addresses[net], '-t',
                                  '3', '-J'], netns=a.name, timeout=60)
            data = json.loads(out.stdout)
            result[tag] = {'network': net, 'mbit_s': round(
                data['end']['sum_received']['bits_per_second'] / 1e6, 1)}
        self.guest.signal(server, 15)
        self.guest.wait(server)
        result['esp_over_plaintext'] = round(
            result['esp']['mbit_s'] / result['plaintext']['mbit_s'], 3)
        self.report['iperf3'] = result
        self.check('iperf3 over ESP', result['esp']['mbit_s'] > 0, **result)

    def failover(self):
        result = failover_mod.Failover(
            self, moves=self.failover_moves,
            baseline_window=self.baseline_window,
            cluster=self.cluster,
            # tripleo-ipsec's road warrior is the mesh's baseline
            road_warrior=self.road_warrior and
            self.oc.plan.mode == plan.MESH).run()
        self.report['failover'] = result
        ours = result['ours']['moves']
        result['outage_target_ms'] = OUTAGE_TARGET_MS
        result['outage_target_met'] = all(
            m['recovered'] and m['outage_ms'] < OUTAGE_TARGET_MS
            for m in ours)
        for i, move in enumerate(ours, 1):
            # the security property and the recovery are checks; the
            # outage is a figure, with its target beside it
            self.check('failover %d (%s -> %s): no cleartext, the compute\'s '
                       'replies and ESP under a new SPI come from the new '
                       'holder only' % (i, move['from'], move['to']),
                       move['cleartext'] == 0 and move['recovered'] and
                       move['esp_restored_ms'] is not None and
                       move['others_after'] == 0 and
                       move['esp_from_others_after'] == 0, **move)
        for i, move in enumerate(result.get('cluster', {}).get('moves', []),
                                 1):
            # pacemaker's own moves: the same properties; the outage is
            # the cluster's (its scheduler, the real IPaddr2) on one CPU
            self.check('failover by a real cluster %d (%s -> %s): no '
                       'cleartext, the new holder answers' % (
                           i, move['from'], move['to']),
                       move['cleartext'] == 0 and move['recovered'] and
                       move['others_after'] == 0 and
                       move['esp_from_others_after'] == 0, **move)
        control = result['ours']['control']
        # the measure must be able to fail: without the gratuitous ARP the
        # compute keeps sending to the old holder's MAC
        self.check('failover control (%s -> %s without ARP): read as failed'
                   % (control['from'], control['to']),
                   not control['recovered'] or
                   control['outage_ms'] >= OUTAGE_TARGET_MS, **control)

    def wanted(self, phase):
        return self.only is None or phase in self.only

    # -- the whole run ----------------------------------------------------
    def run(self):
        try:
            self.phase('boot the guest', self.boot)
            self.phase('build %d controllers + %d computes'
                       % (self.controllers, self.computes), self.build)
            self.phase('deploy', self.first_deploy)
            self.phase('verify playbook + capture', self.prove)
            self.phase('rerun the deploy', self.rerun)
            if self.wanted('exemptions'):
                self.phase('clear exemptions (tcp/22)', self.exemptions)
            if self.wanted('mtu'):
                self.phase('MTU: the plan against the kernel', self.mtu)
            if self.rotation:
                # psk rotation, psk -> cert, renewal: the lab is in auth
                # cert from here on, and proves it as it proved psk
                self.phase('key rotation under traffic', self.rotate)
                self.phase('verify playbook + capture, auth cert',
                           self.prove, 'verify-cert')
                self.phase('rerun the deploy, auth cert', self.rerun,
                           'rerun-cert')
            if self.wanted('restart'):
                self.phase('restart one compute\'s pluto', self.restart)
            if self.wanted('scale-out'):
                self.phase('scale out by one compute', self.scale_out)
            if self.failover_moves:
                self.phase('VIP failover x%d, ours vs road warrior%s'
                           % (self.failover_moves, ', then a real cluster'
                              if self.cluster else ''), self.failover)
            if self.wanted('iperf3'):
                self.phase('iperf3', self.iperf)
            # last: it leaves the nodes with tripleo-ipsec style conns
            if self.wanted('bring-up'):
                self.phase('bring-up time, ours vs tripleo-ipsec style',
                           self.bring_up)
        except Exception as e:
            self.check('the lab ran to the end', False,
                       error='%s: %s' % (type(e).__name__, e))
        finally:
            if self.guest:
                self.guest.close()
        path = self.save()
        self.out.write(summary(self.report))
        self.say('report: %s' % path)
        return self.report


def summary(report):
    """The short, human report of a run."""
    checks = report['checks']
    lines = ['', 'tripleo-ipsec lab: %s (%d of %d checks passed, %.0f s)'
             % ('PASS' if report['ok'] else 'FAIL',
                len([c for c in checks if c['ok']]), len(checks),
                report.get('seconds', 0))]
    if report.get('nodes'):
        lines.append('  nodes: %s' % ', '.join(report['nodes']))
        lines.append('  protected: %s; left in clear: %s' % (
            ', '.join(report['networks']['protected']),
            ', '.join(report['networks']['unprotected'])))
    if 'expected_child_sas' in report:
        lines.append('  Child SAs expected and established after the '
                     'deploy: %d' % report['expected_child_sas'])
    for net, seen in sorted(report.get('capture', {}).items()):
        lines.append('  capture %-13s %6d packets, %4d cleartext, %4d '
                     'marker hits' % (net, seen['packets'],
                                      seen['cleartext'], seen['marker']))
    up = report.get('bring_up')
    if up:
        theirs = ('%s ms' % up['tripleo_ipsec_style_ms']
                  if up['tripleo_ipsec_style_ms'] else
                  'not up in %d ms' % up['limit_ms'])
        lines.append('  bring-up of %s Child SAs: ours %s (%s ms from the '
                     'first initiate), tripleo-ipsec style %s, ratio %s%s'
                     % (up['child_sas'], '%s ms' % up['ours_ms']
                        if up['ours_ms'] else 'not up in %d ms'
                        % up['limit_ms'], up['ours_from_first_initiate_ms'],
                        theirs, '<= ' if up['ratio_is_upper_bound'] else '',
                        up['ratio']))
    fail = report.get('failover')
    if fail:
        lines.append('  VIP %s failover, as crm_simulate orders it, %s '
                     'pinging every 10 ms; outage as the compute saw it, '
                     'target %d ms:' % (fail['vip'], fail['peer'],
                                        fail['outage_target_ms']))
        real = fail.get('real_ipaddr2')
        if real:
            lines.append('    (the real ocf:heartbeat:IPaddr2 here: start '
                         '%d ms, stop %d ms)' % (real['start_ms'],
                                                 real['stop_ms']))
        rows = [('ours', i, m) for i, m in enumerate(
            fail['ours']['moves'], 1)]
        if fail['ours'].get('control'):
            rows.append(('control', 'x', fail['ours']['control']))
        rows += [('road-warrior', i, m) for i, m in enumerate(
            fail.get('road-warrior', {}).get('moves', []), 1)]
        rows += [('cluster', i, m) for i, m in enumerate(
            fail.get('cluster', {}).get('moves', []), 1)]
        for mode, i, m in rows:
            lines.append('    %-12s move %s %s -> %s: cleartext %d, %s'
                         % (mode, i, m['from'][-12:], m['to'][-12:],
                            m['cleartext'], move_figure(m)))
    rot = report.get('rotation') or {}
    for tag, name in (('control', 'the same deploy, nothing changed'),
                      ('baseline', 'old epoch bump (every conn replaced)'),
                      ('psk', 'IpsecKeyEpoch bump'),
                      ('stage_certs', 'certificates staged on psk'),
                      ('to_cert', 'psk -> cert'),
                      ('renew', 'certificate renewal')):
        fig = rot.get(tag)
        if fig:
            lines.append('  %-37s %5d of %6d probes lost, %4d cleartext, '
                         '%d TCP resets, streams %s' % (
                             name + ':', fig['lost'], fig['sent'],
                             fig['cleartext'], fig['resets'],
                             'intact' if fig['streams'] and all(
                                 s['ok'] for s in fig['streams'])
                             else 'BROKEN'))
    perf = report.get('iperf3')
    if perf:
        lines.append('  iperf3: ESP %.0f Mbit/s, plaintext %.0f Mbit/s' % (
            perf['esp']['mbit_s'], perf['plaintext']['mbit_s']))
    lines.append('  phases: %s' % ', '.join(
        '%s %.0f s' % (p['name'], p['seconds']) for p in report['phases']))
    lines += ['  FAILED: %s %s' % (c['name'], json.dumps(
        {k: v for k, v in c.items() if k not in ('name', 'ok')}))
        for c in checks if not c['ok']]
    return '\n'.join(lines) + '\n'


def move_figure(move):
    """A move's outage in words: a move that never recovered says so."""
    if not move['recovered']:
        return ('NOT recovered: no reply from %s in the %d ms window'
                % (move['to'][-12:], move['outage_ms']))
    return ('outage %d ms (capture %d ms), ESP under a new SPI from the '
            'new holder after %s' % (
                move['outage_ms'], move['capture_outage_ms'],
                '%d ms' % move['esp_restored_ms']
                if move['esp_restored_ms'] is not None else 'never'))
