"""VIP failover in the lab: our agent against tripleo-ipsec's road warrior.

Pacemaker itself does not drive the lab: on the guest's one CPU, where a
fork costs 10-110 ms, the real ``ocf:heartbeat:IPaddr2`` alone takes about
1.2-1.4 s to start and 1.1-1.4 s to stop (each report measures it), more
than the whole 1 s outage target, and a 3-node corosync + pacemaker
cluster tried in the guest elected a DC but never had the other two
controllers join within 4 minutes.  Instead pacemaker's own scheduler
decides:
``crm_simulate`` runs on the deploy's CIB (the resources and constraints
the role created with pcs), a ``crm_resource --move`` per move, and the
lab performs the actions of the VIP's two resources in exactly the order
``crm_simulate`` prints them, each agent with its OCF environment:

- the VIP's ``ocf:heartbeat:IPaddr2`` side is what IPaddr2 does to the
  kernel (the address added with a gratuitous ARP, or deleted);
- ``ours``: the IPsec side is our agent, ``ocf:tripleo-ipsec:vip``, with
  the conns the deploy installed (peers keep a trap towards the VIP);
- ``road-warrior``: tripleo-ipsec's conns (a ``right=%any`` listener on the
  VIP holders, ``auto=start`` clients with ``dpdaction=restart``) and the
  stock ``ocf:heartbeat:ipsec`` agent, with its ``fallbacktunnel``.

A compute pings the VIP every 10 ms with the probe's marker throughout
(with ours, controller-0 too, so that an old holder's own traffic to the
VIP is on the wire), while the VIP's network is captured.  Per move:
cleartext packets to or from the VIP (must be 0), the longest gap between
the compute's echo replies (the outage), and the first ESP from the VIP
under an SPI not seen before.
"""

import itertools
import os
import re
import shlex
import shutil
import subprocess
import time

from tripleo_ipsec.lab import overcloud
from tripleo_ipsec import names
from tripleo_ipsec import wire

ACTION = re.compile(r'Resource action: (\S+)\s+(start|stop) on (\S+)')
REPLY = re.compile(r'^\[(\d+\.\d+)\] \d+ bytes from')
HEARTBEAT_IPSEC = '/usr/lib/ocf/resource.d/heartbeat/ipsec'
HEARTBEAT_IPADDR2 = '/usr/lib/ocf/resource.d/heartbeat/IPaddr2'
LEGACY_PSK = 'tripleo-ipsec-lab-road-warrior-psk-not-a-secret-0123'
ESP = 50
# the guest's clock, read into $up without a fork (10 ms steps)
UPTIME = 'read -r up _ </proc/uptime'


class Failover(object):

    def __init__(self, lab, vip_name='internal_api', moves=5):
        self.lab = lab
        self.oc = lab.oc
        self.moves = moves
        self.vip = next(v for v in self.oc.plan.vips if v.name == vip_name)
        self.ip_res = names.vip_ip_resource(self.vip.address)
        self.ours = self.vip.resource['id']
        self.dev = self.vip.network[:15]
        self.bits = 128 if ':' in self.vip.address else 32
        self.holders = [h.name for h in self.oc.topology.hosts
                        if h.vip_holder]
        self.peer = next(h for h in self.oc.topology.hosts
                         if not h.vip_holder and
                         self.vip.network in h.addresses)
        self._moves = itertools.count()
        self.dir = os.path.join(lab.work, 'failover')
        os.makedirs(self.dir, exist_ok=True)

    # -- what pacemaker decides ------------------------------------------
    def _sim(self, args, env=None):
        result = subprocess.run(args, capture_output=True, text=True,
                                timeout=120, env=env)
        if result.returncode:
            raise RuntimeError('%s: %s' % (' '.join(args[:3]), result.stderr))
        return result.stdout

    def transitions(self):
        """The VIP's actions per transition, as crm_simulate orders them.

        [[(resource, action, node)]]: the first start, then each move.
        """
        cib = os.path.join(self.dir, 'cib-0.xml')
        shutil.copy(self.oc.cib, cib)
        online = [a for n in self.holders for a in ('-u', n)]
        steps = []
        current = cib
        for i in range(self.moves + 1):
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
    def ipaddr2(self, action):
        v, bits = self.vip.address, self.bits
        if action == 'start':
            cmd = 'ip addr add %s/%d dev %s' % (v, bits, self.dev)
            if bits == 32:
                cmd += (' && (busybox arping -q -U -c 1 -w 1 -I %s -s %s %s '
                        '>/dev/null 2>&1 &)' % (self.dev, v, v))
            return cmd
        return 'ip addr del %s/%d dev %s' % (v, bits, self.dev)

    def real_ipaddr2(self):
        """ms the real ocf:heartbeat:IPaddr2 takes to start and stop here.

        Why pacemaker's own stack does not drive the lab: its VIP agent
        alone, a fork-heavy shell script, takes longer in the guest than
        the whole outage target.
        """
        env = ' '.join('%s=%s' % kv for kv in (
            ('OCF_ROOT', '/usr/lib/ocf'), ('OCF_RESKEY_ip', self.vip.address),
            ('OCF_RESKEY_cidr_netmask', self.bits),
            ('OCF_RESKEY_nic', self.dev),
            ('OCF_RESOURCE_INSTANCE', self.ip_res)))
        stamp = UPTIME + '; echo "$up"'
        out = self.lab.guest.run(['sh', '-c', '; '.join(
            [stamp] + ['env %s %s %s >/dev/null && %s' % (
                env, HEARTBEAT_IPADDR2, action, stamp)
                for action in ('start', 'stop')])],
            netns=self.holders[0]).stdout.split()
        ups = [float(up) for up in out]
        return {'start_ms': int((ups[1] - ups[0]) * 1000),
                'stop_ms': int((ups[2] - ups[1]) * 1000)}

    def agent(self, mode, action, node):
        env = ['OCF_ROOT=/usr/lib/ocf', 'OCF_RESKEY_vip=%s' % self.vip.address]
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
        return ' '.join(shlex.quote(a) for a in ['env'] + env +
                        [agent, action])

    def perform(self, mode, actions):
        """Run ACTIONS [(resource, action, node)] in order; ms each.

        Pacemaker's executor, already running on every node, forks each
        agent there.  Likewise one shell per run of consecutive actions on
        a node enters that node's namespaces as the move begins, then waits
        on a FIFO until the run before it is done: entering a namespace is
        the lab's cost, not a failover's.  Times come from /proc/uptime
        (10 ms steps), read without a fork.
        """
        groups = []
        for i, (res, action, node) in enumerate(actions):
            cmd = (self.ipaddr2(action) if res == self.ip_res
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
                any(rc != '0' for _, rc, _ in marks)):
            raise RuntimeError('%s %s: %s: %s' % (
                mode, actions, result.stdout[-300:], result.stderr[-300:]))
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

    def road_warrior_files(self, remove=False):
        if remove:
            for host in self.oc.topology.hosts:
                self.lab.guest.run(['sh', '-c', 'rm -f /etc/netns/%s/ipsec.d/'
                                    '%s.*' % (host.name, self.rw_file)])
                self.oc.whack(host.name, '--rereadsecrets')
            return
        name = self.vip.name
        cluster, vipid = '@overcloud%scluster' % name, '@%svip' % name
        common = ['\tauthby=secret', '\ttype=tunnel',
                  '\tike=%s' % self.oc.plan.options['ike'],
                  '\tesp=%s' % self.oc.plan.options['esp'],
                  '\tdpddelay=5', '\tdpdtimeout=15', '\tfailureshunt=drop']
        for host in self.oc.topology.hosts:
            if host.name not in self.holders and host != self.peer:
                continue
            if host.name in self.holders:
                conn = ['conn %s' % self.listener, '\tleft=%s'
                        % self.vip.address, '\tleftid=%s' % vipid,
                        '\tright=%any', '\trightid=%s' % cluster,
                        '\tdpdaction=hold', '\tauto=add']
                secret = '%s %s : PSK "%s"' % (vipid, cluster, LEGACY_PSK)
            else:
                conn = ['conn %s' % self.client, '\tleft=%s'
                        % host.addresses[self.vip.network],
                        '\tleftid=%s' % cluster,
                        '\tright=%s' % self.vip.address,
                        '\trightid=%s' % vipid, '\tdpdaction=restart',
                        '\tauto=start']
                secret = '%s %s : PSK "%s"' % (cluster, vipid, LEGACY_PSK)
            # where tripleo-ipsec put them, so /etc/ipsec.conf includes them
            etc = '/etc/netns/%s/ipsec.d/%s' % (host.name, self.rw_file)
            self.lab.guest.run(['sh', '-c', 'cat > %s.conf' % etc],
                               stdin='\n'.join(conn + common + ['']))
            self.lab.guest.run(['sh', '-c', 'cat > %s.secrets && chmod 600 '
                                '%s.secrets' % (etc, etc)],
                               stdin=secret + '\n')
            self.oc.whack(host.name, '--rereadsecrets')
        return cluster

    def towards_vip(self, host):
        """HOST's own conns towards the VIP (its trap when it is a peer)."""
        return [c.name for c in self.oc.plan.hosts[host].conns
                if c.vip == self.vip.name and c.right == self.vip.address]

    def peer_side(self, road_warrior):
        """Give the peer tripleo-ipsec's road-warrior client, or ours back."""
        ours = self.towards_vip(self.peer.name)
        if road_warrior:
            drop, conf, add = ours, '/etc/ipsec.conf', [self.client]
        else:
            drop, conf, add = [self.client], '/' + names.vip_conf(
                self.vip.name), ours
        for conn in drop:
            self.oc.whack(self.peer.name, '--name', conn, '--delete',
                          check=False)
        self.lab.guest.run(
            [os.path.join(overcloud.LIBEXEC, 'addconn'), '--ctlsocket',
             self.oc.nodes[self.peer.name]['ctlsocket'], '--config',
             conf] + add, netns=self.peer.name)
        for conn in add:
            self.oc.whack(self.peer.name, '--name', conn, *(
                ('--initiate', '--asynchronous') if road_warrior
                else ('--route',)))

    # -- one mode ---------------------------------------------------------
    def run_mode(self, mode, steps):
        if mode != 'ours':
            self.road_warrior_files()
        pcap = os.path.join(self.dir, '%s.pcap' % mode)
        ping = os.path.join(self.dir, '%s-ping.txt' % mode)
        bridge = self.oc.bridges[self.vip.network]
        cap = self.lab.tcpdump(bridge, pcap, 'host %s' % self.vip.address)
        # the VIP comes up where pacemaker starts it, then the peer talks
        self.perform(mode, steps[0])
        if mode != 'ours':
            self.peer_side(road_warrior=True)
        # the peer's pings give the outage; with ours, a controller's too,
        # so the capture sees what an old holder sends to the VIP's next
        # holder (the road-warrior setup gave controllers no client conn)
        talkers = [(self.peer.name, ping)]
        if mode == 'ours':
            talkers.append((self.holders[0], os.path.join(
                self.dir, '%s-ping-%s.txt' % (mode, self.holders[0]))))
        pingers = [self.lab.guest.spawn(
            ['/bin/sh', '-c', 'exec ping -D -n -i 0.01 -W 1 -p %s %s > %s'
             % (wire.MARKER.hex(), self.vip.address, out)], netns=node)
            for node, out in talkers]
        time.sleep(4)
        starts, took = [], []
        for step in steps[1:]:
            starts.append(time.time())
            took.append(self.perform(mode, step))
            time.sleep(4)
        ends = starts[1:] + [time.time()]
        for pinger in pingers:
            self.lab.guest.signal(pinger, 2)
            self.lab.guest.wait(pinger)
        self.lab.guest.signal(cap, 2)
        self.lab.guest.wait(cap)
        # stop both where the VIP is, as pacemaker would: IPsec side first
        holder = steps[-1][-1][2]
        self.perform(mode, [(self.ours, 'stop', holder),
                            (self.ip_res, 'stop', holder)])
        if mode != 'ours':
            # as the deploy left them: the stock agent leaves the listener
            # loaded, and pluto believing the VIP is still local
            for node in self.holders:
                self.oc.whack(node, '--name', self.listener, '--delete',
                              check=False)
                self.oc.whack(node, '--listen')
                for conn in self.towards_vip(node):
                    self.oc.whack(node, '--name', conn, '--route',
                                  check=False)
            self.peer_side(road_warrior=False)
            self.road_warrior_files(remove=True)
        self.lab.guest.run(['sync'])
        result = self.analyse(pcap, ping, starts, ends, steps[1:])
        for move, ms in zip(result['moves'], took):
            move['actions_ms'] = ms
        return result

    def analyse(self, pcap, ping, starts, ends, steps):
        with open(ping) as f:
            replies = [float(m.group(1)) for m in map(REPLY.match, f)
                       if m]
        clear = [ts for ts, *_ in wire.packets(wire.select(
            pcap, 'not (%s)' % wire.ALLOWED))]
        esp = []
        for ts, src, _, proto, payload in wire.packets(wire.read(pcap)):
            if proto == ESP and src == self.vip.address:
                esp.append((ts, payload[:4]))
        moves = []
        for i, (start, end) in enumerate(zip(starts, ends)):
            seen = {spi for ts, spi in esp if ts < start}
            new = [ts for ts, spi in esp if start <= ts < end
                   and spi not in seen]
            # from the last reply before the move to the first after it;
            # no reply after it: the whole window is out
            window = [t for t in replies if start - 1 <= t < end]
            gaps = [b - a for a, b in zip(window, window[1:])]
            if not window or window[-1] < start:
                gaps.append(end - max(window[-1:] or [start]))
            moves.append({
                'from': steps[i][0][2], 'to': steps[i][-1][2],
                'actions': ['%s %s %s' % a for a in steps[i]],
                'cleartext': len([t for t in clear if start <= t < end]),
                'outage_ms': int(max(gaps) * 1000) if gaps else None,
                'replies': len(window),
                'esp_restored_ms': (int((new[0] - start) * 1000)
                                    if new else None)})
        return {'moves': moves, 'cleartext_total': len(clear),
                'replies': len(replies)}

    def run(self):
        steps = self.transitions()
        result = {'vip': self.vip.address, 'peer': self.peer.name,
                  'transitions': [['%s %s %s' % a for a in s]
                                  for s in steps],
                  'real_ipaddr2': self.real_ipaddr2()}
        for mode in ('ours', 'road-warrior'):
            result[mode] = self.run_mode(mode, steps)
        return result
