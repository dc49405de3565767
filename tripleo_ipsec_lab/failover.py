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

"""VIP failover in the lab: our agent against tripleo-ipsec's road warrior.

The moves that measure the agent run in the order pacemaker's own
scheduler gives: ``crm_simulate`` runs on the deploy's CIB (the resources
and constraints the role created with pcs), a ``crm_resource --move`` per
move, and the lab performs the actions of the VIP's two resources in
exactly the order ``crm_simulate`` prints them, each agent with its OCF
environment:

- the VIP's ``ocf:heartbeat:IPaddr2`` side is what IPaddr2 does to the
  kernel (the address added, and announced with resource-agents'
  ``send_arp``, or deleted): on the guest's one CPU the real IPaddr2 alone
  takes 1.2-3 s to start and as long to stop (each report measures it),
  more than the whole 1 s outage target;
- ``ours``: the IPsec side is our agent, ``ocf:tripleo-ipsec:vip``, with
  the conns the deploy installed (peers keep a trap towards the VIP);
- ``road-warrior``: tripleo-ipsec's conns (a ``right=%any`` listener on the
  VIP holders, ``auto=start`` clients with ``dpdaction=restart``) and the
  stock ``ocf:heartbeat:ipsec`` agent, with its ``fallbacktunnel``.

With ``cluster``, the same moves then run on a real corosync + pacemaker
cluster of the controllers (``cluster.py``): pacemaker decides, and its
executor runs the real IPaddr2 and our agent.

A compute pings the VIP every 10 ms with the probe's marker throughout
(with ours, controller-0 too, so that an old holder's own traffic to the
VIP is on the wire), while the VIP's network is captured.  After each
move the lab waits until the compute's replies are steady again (or the
mode's window is over) before the next.  Per move (``outage.py`` defines
the measure): cleartext packets to or from the VIP (must be 0), the
outage the compute saw, counted on replies from the node that should
hold the VIP after the move (its MAC on the capture), and the first ESP
from the VIP to the compute under an SPI not seen before.  A move with no
reply from the new holder has failed, with its window as its figure.

After our moves, one more move runs without the gratuitous ARP (the
control): the compute keeps sending to the old holder's MAC, and the
measure must read that move as failed, or the measure could not fail.
"""

import itertools
import os
import re
import shlex
import shutil
import subprocess
import time

from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec.node import wire
from tripleo_ipsec_lab import cluster as cluster_mod
from tripleo_ipsec_lab import outage
from tripleo_ipsec_lab import overcloud

ACTION = re.compile(r'Resource action: (\S+)\s+(start|stop) on (\S+)')
MAC = re.compile(r'link/ether ([0-9a-f:]{17})')
OCF_ROOT = '/usr/lib/ocf'
HEARTBEAT_IPSEC = OCF_ROOT + '/resource.d/heartbeat/ipsec'
HEARTBEAT_IPADDR2 = OCF_ROOT + '/resource.d/heartbeat/IPaddr2'
# resource-agents' programs (HA_BIN), as IPaddr2 runs them by default
HA_BIN = '/usr/libexec/heartbeat'
SEND_ARP = HA_BIN + '/send_arp'
SEND_UA = HA_BIN + '/send_ua'
ARP_INTERVAL_MS, ARP_COUNT = 200, 5
LEGACY_PSK = 'tripleo-ipsec-lab-road-warrior-psk-not-a-secret-0123'
# How long a move may take to give steady replies again before the next,
# on a guest whose fork costs what the lab's reference does (the lab
# scales them by what it measured): ours recovers in 1-2 s; the road
# warrior waits for DPD, which in libreswan 4.10's IKEv2 declares the
# peer dead after the retransmit timeout (60 s), not upstream's
# dpdtimeout=15: bench/failover.py gives it 90 s, the end-to-end test 30.
WINDOW_S = {'ours': 8, 'road-warrior': 30, 'control': 8, 'cluster': 40}
# How long the VIP may take to answer once it first comes up, before any
# move: no outage is measured there, but its first IKE exchange runs on a
# guest whose CPU the rest of the suite shares (1.3-1.4 s here, 8 s was
# once not enough on a loaded CI machine); the report keeps the figure
FIRST_ANSWER_S = 30
# how long the real cluster may take to form and start the VIP (scaled)
CLUSTER_FORM_S = 180
# after the replies are steady, before the next move
SETTLE_S = 0.5
# the road warrior's config setup, under each node's /etc/ipsec.d
RW_SETUP_DIR = 'road-warrior'
# the guest's clock, read into $up without a fork (10 ms steps)
UPTIME = 'read -r up _ </proc/uptime'


class Failover(object):

    def __init__(self, lab, vip_name='internal_api', moves=5,
                 baseline_window=None, cluster=False, road_warrior=True):
        self.lab = lab
        self.cluster = cluster
        # False: our agent's moves only, without tripleo-ipsec's road
        # warrior as the baseline (a scenario that proved that already)
        self.road_warrior = road_warrior
        self.windows = {mode: round(seconds * lab.scale, 1)
                        for mode, seconds in WINDOW_S.items()}
        if baseline_window:
            self.windows['road-warrior'] = baseline_window * lab.scale
        self.oc = lab.oc
        self.moves = moves
        self.vip = next(v for v in self.oc.plan.vips if v.name == vip_name)
        self.ip_res = names.vip_ip_resource(self.vip.address)
        self.ours = self.vip.resource['id']
        self.dev = self.vip.network[:15]
        self.bits = 128 if ':' in self.vip.address else 32
        self.holders = [h.name for h in self.oc.topology.hosts
                        if h.vip_holder]
        # the node that pings the VIP through the moves (None: a VIP no
        # compute reaches, which the rotation brings up all the same)
        self.peer = next((h for h in self.oc.topology.hosts
                          if not h.vip_holder and
                          self.vip.network in h.addresses), None)
        self._moves = itertools.count()
        self.dir = os.path.join(lab.work, 'failover')
        os.makedirs(self.dir, exist_ok=True)
        # what send_arp or send_ua print, kept for a move that fails
        self.arp_log = os.path.join(self.dir, 'announce.log')
        self.macs = {}

    # -- what pacemaker decides ------------------------------------------
    def _sim(self, args, env=None):
        result = subprocess.run(args, capture_output=True, text=True,
                                timeout=120, env=env)
        if result.returncode:
            raise RuntimeError('%s: %s' % (' '.join(args[:3]), result.stderr))
        return result.stdout

    def transitions(self, moves):
        """The VIP's actions per transition, as crm_simulate orders them.

        [[(resource, action, node)]]: the first start, then MOVES moves.
        """
        cib = os.path.join(self.dir, 'cib-0.xml')
        shutil.copy(self.oc.cib, cib)
        online = [a for n in self.holders for a in ('-u', n)]
        steps = []
        current = cib
        for i in range(moves + 1):
            out_file = os.path.join(self.dir, 'cib-%d.xml' % (i + 1))
            if i:
                node = steps[-1][-1][2]      # where the VIP is now
                target = self.holders[(self.holders.index(node) + 1) %
                                      len(self.holders)]
                self._sim(['crm_resource', '--move', '-r', self.ip_res,
                           '-N', target],
                          env=dict(os.environ, CIB_file=current))
                out = self._sim(['crm_simulate', '-x', current, '-S', '-O',
                                 out_file])
            else:
                # the controllers join, with quorum: pacemaker starts it
                out = self._sim(['crm_simulate', '-x', current, '-q', 'true',
                                 '-S', '-O', out_file] + online)
            steps.append([a for a in ACTION.findall(out)
                          if a[0] in (self.ip_res, self.ours)])
            current = out_file
        return steps

    # -- the agents, as pacemaker would run them --------------------------
    def ipaddr2(self, action, arp=True):
        """What ocf:heartbeat:IPaddr2 does to the kernel, as shell.

        ``start`` adds the address and, as IPaddr2 does by default
        (``arp_bg``), announces it in the background with resource-agents'
        own ``send_arp`` (IPv4: 5 times, 200 ms apart) or ``send_ua``
        (IPv6 unsolicited neighbour advertisements); its pid joins
        $senders, which the move waits for, so a sender that fails fails
        the move.
        ARP=False leaves the announcement out (the control move).
        """
        v, bits = self.vip.address, self.bits
        if action != 'start':
            return 'ip addr del %s/%d dev %s' % (v, bits, self.dev)
        if bits == 32:
            cmd = 'ip addr add %s/32 dev %s' % (v, self.dev)
            sender = [SEND_ARP, '-i', ARP_INTERVAL_MS, '-r', ARP_COUNT,
                      self.dev, v, 'auto', 'not_used', 'not_used']
        else:
            # IPaddr2 waits for duplicate address detection to end first;
            # the lab's VIP skips it
            cmd = 'ip addr add %s/128 dev %s nodad' % (v, self.dev)
            sender = [SEND_UA, '-i', ARP_INTERVAL_MS, '-c', ARP_COUNT, v,
                      '128', self.dev]
        if not arp:
            return cmd
        return '%s && { %s >>%s 2>&1 & senders="$senders $!"; }' % (
            cmd, ' '.join(shlex.quote(str(a)) for a in sender), self.arp_log)

    def real_ipaddr2(self):
        """ms the real ocf:heartbeat:IPaddr2 takes to start and stop here.

        Why pacemaker's own stack does not drive the lab: its VIP agent
        alone, a fork-heavy shell script, takes longer in the guest than
        the whole outage target.
        """
        env = ' '.join('%s=%s' % kv for kv in (
            ('OCF_ROOT', OCF_ROOT), ('OCF_RESKEY_ip', self.vip.address),
            ('OCF_RESKEY_cidr_netmask', self.bits),
            ('OCF_RESKEY_nic', self.dev),
            ('OCF_RESOURCE_INSTANCE', self.ip_res)))
        stamp = UPTIME + '; echo "$up"'
        # set -e: an IPaddr2 that fails stops the lab with its output
        out = self.lab.guest.run(['sh', '-ec', '; '.join(
            [stamp] + ['env %s %s %s >&2; %s' % (
                env, HEARTBEAT_IPADDR2, action, stamp)
                for action in ('start', 'stop')])],
            netns=self.holders[0]).stdout.split()
        ups = [float(up) for up in out]
        return {'start_ms': int((ups[1] - ups[0]) * 1000),
                'stop_ms': int((ups[2] - ups[1]) * 1000)}

    def agent(self, mode, action, node):
        env = ['OCF_ROOT=%s' % OCF_ROOT,
               'OCF_RESKEY_vip=%s' % self.vip.address]
        if mode == 'ours':
            env += ['OCF_RESOURCE_INSTANCE=%s' % self.ours,
                    'OCF_RESKEY_vip_name=%s' % self.vip.name,
                    'OCF_RESKEY_ctlsocket=%s'
                    % self.oc.nodes[node]['ctlsocket']]
            agent = os.path.join(overcloud.OCF_DIR, names.OCF_TYPE)
        else:
            env += ['OCF_RESOURCE_INSTANCE=tripleo-ipsec-%s' % self.vip.name,
                    'OCF_RESKEY_tunnel=%s' % self.listener,
                    'OCF_RESKEY_fallbacktunnel=%s' % self.client,
                    # the stock agent runs the ipsec command: point it at
                    # this node's pluto
                    'IPSEC_RUNDIR=%s' % self.oc.nodes[node]['rundir']]
            agent = HEARTBEAT_IPSEC
        # as pacemaker's executor runs an agent: its environment set, no
        # env(1) in between
        return ' '.join('%s=%s' % (k, shlex.quote(v)) for k, v in (
            a.split('=', 1) for a in env)) + ' %s %s' % (
            shlex.quote(agent), action)

    def perform(self, mode, actions, arp=True):
        """Run ACTIONS [(resource, action, node)] in order; ms each.

        Pacemaker's executor, already running on every node, forks each
        agent there.  Likewise one shell per run of consecutive actions on
        a node enters that node's namespaces as the move begins, then waits
        on a FIFO until the run before it is done: entering a namespace is
        the lab's cost, not a failover's.  Times come from /proc/uptime
        (10 ms steps), read without a fork.  A failed action, or an address
        announcement that failed, stops the run with its output.
        """
        groups = []
        for i, (res, action, node) in enumerate(actions):
            cmd = (self.ipaddr2(action, arp) if res == self.ip_res
                   else self.agent(mode, action, node))
            if not groups or groups[-1][0] != node:
                groups.append((node, []))
            groups[-1][1].append((i, cmd))
        fifo = '/run/tripleo-ipsec-lab-move-%d' % next(self._moves)
        fifos = ['%s-%d' % (fifo, g) for g in range(1, len(groups))]
        script = ['mkfifo %s' % ' '.join(fifos)] if fifos else []
        script.append(UPTIME + '; echo "@@ - 0 $up"')
        for g, (node, steps) in enumerate(groups):
            nxt = fifos[g] if g < len(fifos) else None
            lines = ['read -r go <%s; [ "$go" = go ] || exit 1'
                     % fifos[g - 1]] if g else []
            for i, cmd in steps:
                lines.append('%s; rc=$?; %s; echo "@@ %d $rc $up"'
                             % (cmd, UPTIME, i))
                lines.append('[ "$rc" = 0 ] || { %sexit "$rc"; }' % (
                    'echo fail >%s; ' % nxt if nxt else ''))
            if nxt:
                lines.append('echo go >%s' % nxt)
            lines.append('for p in $senders; do wait "$p" || '
                         '{ echo "!! announce failed: rc $?"; exit 1; }; done')
            script.append('ip netns exec %s sh -c %s &' % (
                node, shlex.quote('\n'.join(lines))))
        script.append('wait')
        if fifos:
            script.append('rm -f %s' % ' '.join(fifos))
        result = self.lab.guest.run(['sh', '-c', '\n'.join(script)],
                                    check=False, timeout=120)
        marks = sorted((line.split()[1:] for line in
                        result.stdout.splitlines() if line.startswith('@@ ')),
                       key=lambda m: -1 if m[0] == '-' else int(m[0]))
        if (len(marks) != len(actions) + 1 or
                any(rc != '0' for _, rc, _ in marks) or
                '!! announce failed' in result.stdout):
            logs = ''
            if os.path.exists(self.arp_log):
                with open(self.arp_log) as f:
                    logs = f.read()[-300:]
            raise RuntimeError('%s %s: %s: %s %s' % (
                mode, actions, result.stdout[-300:], result.stderr[-300:],
                logs))
        ups = [float(up) for _, _, up in marks]
        return [int(round((b - a) * 1000)) for a, b in zip(ups, ups[1:])]

    # -- tripleo-ipsec's road-warrior conns -------------------------------

    @property
    def listener(self):
        return 'overcloud-%s-vip-tunnel' % self.vip.name

    @property
    def client(self):
        return 'overcloud-%s-node-to-vip-tunnel' % self.vip.name

    @property
    def rw_file(self):
        return 'overcloud-%s-vip-tunnels' % self.vip.name

    @property
    def rw_nodes(self):
        """The nodes the road warrior gives conns: holders and the peer."""
        return self.holders + [self.peer.name]

    def road_warrior_files(self, remove=False):
        """Write (or remove) tripleo-ipsec's VIP tunnels, as upstream did.

        Holders: a listener on the VIP for any peer that authenticates as
        the cluster's one shared ID (``dpdaction=hold``); the peer: a client
        towards the VIP (``auto=start``, ``dpdaction=restart``); DPD 5 s /
        15 s; and, because every client shares one ID, ``uniqueids=no``
        (upstream's role put it into ``config setup``: here a config of
        its own that includes the same ``/etc/ipsec.d``, with which the
        plutos restart).
        """
        if remove:
            for node in self.rw_nodes:
                self.lab.guest.run(['sh', '-c', 'rm -rf /etc/netns/%s/ipsec.d/'
                                    '%s.* /etc/netns/%s/ipsec.d/%s' % (
                                        node, self.rw_file, node,
                                        RW_SETUP_DIR)])
            return
        name = self.vip.name
        cluster, vipid = '@overcloud%scluster' % name, '@%svip' % name
        common = ['\tauthby=secret', '\ttype=tunnel',
                  '\tike=%s' % self.oc.plan.options.ike,
                  '\tesp=%s' % self.oc.plan.options.esp,
                  '\tdpddelay=5', '\tdpdtimeout=15', '\tfailureshunt=drop']
        setup = 'config setup\n\tuniqueids=no\n\ninclude /etc/ipsec.d/*.conf\n'
        for node in self.rw_nodes:
            if node in self.holders:
                conn = ['conn %s' % self.listener, '\tleft=%s'
                        % self.vip.address, '\tleftid=%s' % vipid,
                        '\tright=%any', '\trightid=%s' % cluster,
                        '\tdpdaction=hold', '\tauto=add']
                secret = '%s %s : PSK "%s"' % (vipid, cluster, LEGACY_PSK)
            else:
                conn = ['conn %s' % self.client, '\tleft=%s'
                        % self.peer.addresses[self.vip.network],
                        '\tleftid=%s' % cluster,
                        '\tright=%s' % self.vip.address,
                        '\trightid=%s' % vipid, '\tdpdaction=restart',
                        '\tauto=start']
                secret = '%s %s : PSK "%s"' % (cluster, vipid, LEGACY_PSK)
            # where tripleo-ipsec put them, so /etc/ipsec.conf includes them
            etc = '/etc/netns/%s/ipsec.d' % node
            self.lab.guest.run(['sh', '-c', 'cat > %s/%s.conf' % (
                etc, self.rw_file)], stdin='\n'.join(conn + common + ['']))
            self.lab.guest.run(['sh', '-c', 'cat > %s/%s.secrets && chmod 600 '
                                '%s/%s.secrets' % (etc, self.rw_file, etc,
                                                   self.rw_file)],
                               stdin=secret + '\n')
            self.lab.guest.run(['sh', '-c', 'mkdir -p %s/%s && cat > '
                                '%s/%s/ipsec.conf' % (etc, RW_SETUP_DIR, etc,
                                                      RW_SETUP_DIR)],
                               stdin=setup)

    def restart_plutos(self, road_warrior):
        """Restart the holders' and the peer's plutos.

        With or without the road warrior's ``config setup``; every conn of
        /etc/ipsec.d loads as its ``auto=`` says (the VIP holders' conns
        are ``ignore``: the agent loads them).
        """
        config = ('/etc/ipsec.d/%s/ipsec.conf' % RW_SETUP_DIR
                  if road_warrior else None)
        self.oc.parallel(self.oc.stop_pluto, self.rw_nodes)
        self.oc.parallel_start(self.rw_nodes, config)

    def safety_net(self, op):
        """Delete (or add back) the peer's safety net towards the VIP."""
        mine = self.peer.addresses[self.vip.network]
        for src, dst, direction in ((mine, self.vip.address, 'out'),
                                    (self.vip.address, mine, 'in')):
            self.lab.guest.run(['ip'] + libreswan.net_policy(
                op, src, dst, direction), netns=self.peer.name)

    def towards_vip(self, host):
        """HOST's own conns towards the VIP (its trap when it is a peer)."""
        return [c.name for c in self.oc.plan.hosts[host].conns
                if c.vip == self.vip.name and c.right == self.vip.address]

    # -- one mode ---------------------------------------------------------
    def mac(self, node):
        """NODE's MAC on the VIP's network (what its frames carry)."""
        out = self.lab.guest.run(['ip', '-o', 'link', 'show', 'dev',
                                  self.dev], netns=node).stdout
        return MAC.search(out).group(1)

    def wait_steady(self, ping, since, limit):
        """Wait until the ping log shows steady replies after SINCE.

        Returns the time they were steady, or None once LIMIT seconds
        have passed.
        """
        deadline = time.monotonic() + limit
        while True:
            text = self.lab.guest.run(['tail', '-c', '16384', ping]).stdout
            at = outage.steady(outage.replies(text), since)
            if at is not None or time.monotonic() >= deadline:
                return at
            time.sleep(0.3)

    def wait_address(self, node, limit):
        """Wait until the VIP is on NODE alone; the time, or None."""
        deadline = time.monotonic() + limit
        script = '; '.join(
            'echo "%s $(ip -n %s -o addr show to %s)"' % (
                n, n, self.vip.address) for n in self.holders)
        while True:
            out = self.lab.guest.run(['sh', '-c', script])
            if out.stderr.strip():
                raise RuntimeError('where is %s: %s'
                                   % (self.vip.address, out.stderr))
            on = {line.split()[0] for line in out.stdout.splitlines()
                  if len(line.split()) > 1}
            if on == {node}:
                return time.time()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def silent(self, ping, holder):
        """What the nodes say when the VIP does not answer (for the error).

        The peer's last ping lines, its neighbour entry and SAs for the
        VIP, which node has the address, whether each pluto runs, and
        pluto's last lines about the VIP on the peer and the holder.
        """
        v = self.vip.address
        nodes = [self.peer.name, holder]
        parts = []
        for cmd, node in (
                ('tail -n 3 %s' % ping, None),
                ('ip neigh show to %s' % v, self.peer.name),
                ('ip xfrm state | grep -c %s' % v, self.peer.name),
                ('ip xfrm state | grep -c %s' % v, holder)):
            out = self.lab.guest.run(['sh', '-c', cmd], netns=node,
                                     check=False)
            parts.append('%s%s: %s' % (node + ' ' if node else '', cmd,
                                       (out.stdout + out.stderr).strip()))
        for node in self.holders + [self.peer.name]:
            pid = os.path.join(self.oc.nodes[node]['rundir'], 'pluto.pid')
            alive = self.lab.guest.run(
                ['sh', '-c', 'kill -0 "$(cat %s)"' % pid], check=False)
            on = self.lab.guest.run(['ip', '-o', 'addr', 'show', 'to', v],
                                    netns=node, check=False).stdout.strip()
            parts.append('%s: pluto %s%s' % (
                node, 'runs' if alive.returncode == 0 else 'is DOWN',
                ', has the VIP' if on else ''))
        for node in nodes:
            log = os.path.join(self.oc.work, 'logs', 'pluto-%s.log' % node)
            out = self.lab.guest.run(
                ['sh', '-c', 'grep -F -e %s %s | tail -n 8' % (v, log)],
                check=False)
            parts.append('%s pluto log: %s' % (node, out.stdout.strip()))
        return ' | '.join(parts)

    def watch(self, mode, pingers):
        """Capture the VIP's network; ping the VIP from every node of PINGERS.

        The peer comes first.  Returns (pcap, the peer's ping log, the pids
        to stop).
        """
        pcap = os.path.join(self.dir, '%s.pcap' % mode)
        cap = self.lab.tcpdump(self.oc.bridges[self.vip.network], pcap,
                               'host %s' % self.vip.address)
        logs = [os.path.join(self.dir, '%s-ping%s.txt' % (
            mode, '-' + node if i else '')) for i, node in enumerate(pingers)]
        # the logs exist before the pingers start: wait_steady reads them
        self.lab.guest.run(['sh', '-c', '; '.join(': >%s' % log
                                                  for log in logs)])
        pids = [self.lab.guest.spawn(
            ['/bin/sh', '-c', 'exec ping -D -n -i 0.01 -W 1 -p %s %s > %s'
             % (wire.MARKER.hex(), self.vip.address, log)], netns=node)
            for node, log in zip(pingers, logs)]
        return pcap, logs[0], pids + [cap]

    def unwatch(self, pids):
        """Stop the pingers and the capture (SIGINT: they flush)."""
        for pid in pids:
            self.lab.guest.signal(pid, 2)
            self.lab.guest.wait(pid)

    def said(self, mode, i, old, new, start, at, limit, note=''):
        self.lab.say('  %s move %d%s %s -> %s: %s' % (
            mode, i, note, old, new, 'replies steady after %.1f s'
            % (at - start) if at else 'no steady replies in %d s' % limit))

    def run_mode(self, mode, steps, control=None):
        """The moves of STEPS[1:] (and CONTROL, without the ARP) in MODE."""
        if mode != 'ours':
            self.road_warrior_files()
        # the VIP comes up where pacemaker starts it, then the peer talks
        self.perform(mode, steps[0])
        if mode != 'ours':
            self.restart_plutos(road_warrior=True)
            # the client replaces the peer's trap towards the VIP, and
            # the kernel safety net under it goes too: tripleo-ipsec had
            # none, and its client comes up through the cleartext moment
            # the net would drop
            for conn in self.towards_vip(self.peer.name):
                self.oc.whack(self.peer.name, '--name', conn, '--delete')
            self.safety_net('deleteall')
        # the peer's pings give the outage; with ours, a controller's too,
        # so the capture sees what an old holder sends to the VIP's next
        # holder (the road-warrior setup gave controllers no client conn)
        pcap, ping, pids = self.watch(mode, [self.peer.name] + (
            [self.holders[0]] if mode == 'ours' else []))
        first = time.time()
        if self.wait_steady(ping, first,
                            FIRST_ANSWER_S * self.lab.scale) is None:
            raise RuntimeError('%s: the VIP %s never answered %s before the '
                               'first move (on %s); %s' % (
                                   mode, self.vip.address, self.peer.name,
                                   steps[0][-1][2],
                                   self.silent(ping, steps[0][-1][2])))
        first = round(time.time() - first, 1)
        time.sleep(SETTLE_S)
        moves = [(step, True) for step in steps[1:]]
        if control:
            moves.append((control, False))
        starts, took = [], []
        for i, (step, arp) in enumerate(moves, 1):
            starts.append(time.time())
            took.append(self.perform(mode, step, arp))
            limit = self.windows[mode if arp else 'control']
            at = self.wait_steady(ping, time.time(),
                                  limit - (time.time() - starts[-1]))
            self.said(mode, i, step[0][2], step[-1][2], starts[-1], at, limit,
                      '' if arp else ' (control, no ARP)')
            time.sleep(SETTLE_S)
        ends = starts[1:] + [time.time()]
        self.unwatch(pids)
        # stop both where the VIP is, as pacemaker would: IPsec side first
        holder = moves[-1][0][-1][2]
        self.perform(mode, [(self.ours, 'stop', holder),
                            (self.ip_res, 'stop', holder)])
        if mode != 'ours':
            # as the deploy left them
            self.road_warrior_files(remove=True)
            self.restart_plutos(road_warrior=False)
            self.safety_net('add')
        self.lab.guest.run(['sync'])
        result = self.analyse(pcap, ping, starts, ends, moves)
        for move, ms in zip(result['moves'], took):
            move['actions_ms'] = ms
        # from the pingers' start to steady replies from the first holder
        result['first_steady_s'] = first
        if control:
            result['control'] = result['moves'].pop()
        return result

    def analyse(self, pcap, ping, starts, ends, moves):
        """Per move: cleartext, and the outage as ``outage.py`` defines it.

        ``outage_ms`` comes from the compute's replies (its ping log), each
        attributed to the MAC of the ESP frame it came in;
        ``capture_outage_ms`` is the same measure on the ESP frames alone.
        """
        with open(ping) as f:
            times = outage.replies(f.read())
        data = wire.read(pcap)
        frames = outage.esp_frames(data, self.vip.address,
                                   self.peer.addresses[self.vip.network])
        series = outage.attribute(times, frames)
        on_wire = [(ts, mac) for ts, mac, _ in frames]
        clear = [ts for ts, *_ in wire.packets(wire.select(
            pcap, 'not (%s)' % wire.ALLOWED))]
        result = []
        for (step, arp), start, end in zip(moves, starts, ends):
            new = step[-1][2]
            mac = self.macs[new]
            seen = {spi for ts, _, spi in frames if ts < start}
            fresh = [ts for ts, who, spi in frames if start <= ts < end
                     and spi not in seen and who == mac]
            move = outage.measure(series, start, end, mac)
            wired = outage.measure(on_wire, start, end, mac)
            first = fresh[0] if fresh else end
            result.append(dict(
                move, capture_outage_ms=wired['outage_ms'],
                window_ms=outage.ms(end - start), window=[start, end],
                announced=arp, **{
                    'from': step[0][2], 'to': new, 'new_holder_mac': mac,
                    'actions': ['%s %s %s' % a for a in step],
                    'cleartext': len([t for t in clear
                                      if start <= t < end]),
                    'esp_restored_ms': (outage.ms(fresh[0] - start)
                                        if fresh else None),
                    # ESP to the compute from any other node once the new
                    # holder's first new SA is on the wire
                    'esp_from_others_after': len([
                        ts for ts, who, _ in frames
                        if first <= ts < end and who != mac]),
                    'replies': len([t for t in times if start <= t < end])}))
        return {'moves': result, 'cleartext_total': len(clear),
                'replies': len(times)}

    # -- a real cluster drives the moves ----------------------------------
    def run_cluster(self, moves):
        """MOVES moves of the VIP by a real corosync + pacemaker cluster.

        Pacemaker decides and its executor runs the real IPaddr2 and our
        agent; the compute's pings and the capture measure each move as
        in the other modes.
        """
        mode = 'cluster'
        # corosync talks over ctlplane here (TripleO's PacemakerNetwork is
        # internal_api)
        addresses = {h.name: h.addresses['ctlplane']
                     for h in self.oc.topology.hosts if h.vip_holder}
        pcmk = cluster_mod.Cluster(
            self.lab, self.holders, self.oc.cib, [self.ip_res, self.ours],
            CLUSTER_FORM_S * self.lab.scale)
        pcap, ping, pids = self.watch(mode, [self.peer.name])
        steps, starts, holder = [], [], None
        try:
            running = pcmk.start(addresses, {
                n: self.oc.nodes[n]['rundir'] for n in self.holders})
            holder = running[self.ip_res]
            if self.wait_steady(ping, time.time(),
                                self.windows[mode]) is None:
                raise RuntimeError('cluster: the VIP %s never answered %s '
                                   'after pacemaker started it on %s' % (
                                       self.vip.address, self.peer.name,
                                       holder))
            time.sleep(SETTLE_S)
            for i in range(1, moves + 1):
                target = self.holders[(self.holders.index(holder) + 1) %
                                      len(self.holders)]
                starts.append(time.time())
                pcmk.move(self.ip_res, target)
                # pacemaker acts after the command returns: replies are
                # steady again only once the address has moved
                moved = self.wait_address(target, self.windows[mode])
                at = moved and self.wait_steady(
                    ping, moved, self.windows[mode] -
                    (time.time() - starts[-1]))
                self.said(mode, i, holder, target, starts[-1], at,
                          self.windows[mode])
                steps.append(([(self.ip_res, 'crm_resource --move', holder),
                               (self.ip_res, 'crm_resource --move', target)],
                              True))
                holder = target
                time.sleep(SETTLE_S)
        finally:
            ends = starts[1:] + [time.time()]
            self.unwatch(pids)
            pcmk.stop()
            # as the deploy left it: the VIP and its conns nowhere
            for node in self.holders:
                here = self.lab.guest.run(['ip', '-o', 'addr', 'show', 'to',
                                           self.vip.address],
                                          netns=node).stdout
                if here.strip():
                    self.perform('ours', [(self.ours, 'stop', node),
                                          (self.ip_res, 'stop', node)])
        self.lab.guest.run(['sync'])
        result = self.analyse(pcap, ping, starts, ends, steps)
        result.update(pcmk.figures)
        return result

    def run(self):
        # the moves, and one more for the control
        steps = self.transitions(self.moves + 1)
        self.macs = {node: self.mac(node) for node in self.holders}
        result = {'vip': self.vip.address, 'peer': self.peer.name,
                  'peer_address': self.peer.addresses[self.vip.network],
                  'macs': self.macs, 'scale': self.lab.scale,
                  'windows_s': self.windows,
                  'transitions': [['%s %s %s' % a for a in s]
                                  for s in steps],
                  'real_ipaddr2': self.real_ipaddr2()}
        result['ours'] = self.run_mode('ours', steps[:-1], steps[-1])
        if self.road_warrior:
            result['road-warrior'] = self.run_mode('road-warrior',
                                                   steps[:-1])
        if self.cluster:
            result['cluster'] = self.run_cluster(self.moves)
        return result
