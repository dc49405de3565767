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

"""What N SAs cost one node: the figures behind the conn budget.

    python bench/establish.py [--sizes 100,250,500,1000] [--json FILE]

Run as root.  Node A is overcloud-controller-0 of a cloud with N computes
on one network: its pluto loads the conns tripleo-ipsec renders for it
(``Libreswan.add``, as the role does) with their keys.  A second pluto
plays all N peers (their addresses on its side of a veth pair, the same
conns mirrored, the same keys).  A initiates every conn at once, as after
a restart of its pluto; the clock stops when A has an established Child
SA for every conn, read from ``whack --status``.

Per size: the wall time until every SA is up, A's pluto CPU seconds (from
/proc), A's resident memory with the conns loaded and with every SA up,
and the kernel's xfrm state count.  The ratios compare each size's cost
per SA with the smallest size's, measured in the same run: near 1.0 the
cost grows linearly.  One pluto answering for all N peers makes the wall
time pessimistic (in a cloud each peer answers on its own CPU); A's CPU
time is its own share either way.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import load  # noqa: E402
from tripleo_ipsec.node import libreswan  # noqa: E402
from tripleo_ipsec_lab import guest  # noqa: E402
from tripleo_ipsec_lab import overcloud  # noqa: E402

LOCAL = '10.99.0.10'     # overcloud-controller-0 in config()
ALIAS = 'bench-all'
TIMEOUT = 900


def config(count):
    """A's conns and secrets with COUNT peers: (conf, secrets, names, peers).

    The node bench/load.py loads: overcloud-controller-0 with COUNT
    computes on internal_api.
    """
    from tripleo_ipsec.node import names
    host, files = load.node(count)
    return (files[names.network_conf('internal_api')][0],
            files[names.network_secrets('internal_api')][0],
            [c.name for c in host.conns], [c.right for c in host.conns])


def mirrored(text):
    """The same conns seen from the other end: left and right swapped."""
    return re.sub(r'^(\t)(left|right)=', lambda m: '%s%s=' % (
        m.group(1), 'right' if m.group(2) == 'left' else 'left'),
        text, flags=re.M)


def with_alias(text):
    return re.sub(r'^(\tauto=ondemand)$', r'\1\n\tconnalias=%s' % ALIAS,
                  text, flags=re.M)


WHACK = '/usr/libexec/ipsec/whack'
ADDCONN = '/usr/libexec/ipsec/addconn'
PLUTO = '/usr/libexec/ipsec/pluto'


class Node(object):
    """One pluto in a network namespace of the guest."""

    def __init__(self, g, work, ns, conf, secrets):
        self.g, self.ns = g, ns
        self.ctl = '/run/pluto-%s/pluto.ctl' % ns
        self.log = os.path.join(work, 'pluto-%s.log' % ns)
        g.run(['/bin/sh', '-ec', 'mkdir -p /etc/netns/%s/ipsec.d /run/pluto-%s'
               ' && ipsec initnss --nssdir /etc/netns/%s/ipsec.d'
               % (ns, ns, ns)])
        # the side that plays every peer listens on all their addresses:
        # two sockets each, past the default 1,024 files at 500 peers
        g.run(['/bin/sh', '-c', 'ulimit -n 16384 && exec "$@"', 'pluto',
               PLUTO, '--config', conf, '--secretsfile', secrets,
               '--nssdir', '/etc/ipsec.d', '--rundir', '/run/pluto-%s' % ns,
               '--logfile', self.log], netns=ns)
        deadline = time.monotonic() + 60
        while self.whack('--status', check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError('pluto in %s did not start' % ns)
            time.sleep(0.1)
        self.pid = int(g.run(['cat', '/run/pluto-%s/pluto.pid' % ns])
                       .stdout.strip())

    def whack(self, *args, check=True):
        return self.g.run([WHACK, '--ctlsocket', self.ctl] + list(args),
                          netns=self.ns, check=check, timeout=600)

    def load(self, conf, names):
        """addconn by name, then one route by their alias (Libreswan.add)."""
        self.g.run([ADDCONN, '--ctlsocket', self.ctl, '--config', conf] +
                   names, netns=self.ns, timeout=600)
        self.whack('--listen')
        self.whack('--route', '--name', ALIAS)
        status = libreswan.parse_status(self.whack('--status').stdout)
        routed = [n for n in names if n in status and
                  status[n].routing != 'unrouted']
        if len(routed) != len(names):
            raise RuntimeError('%s: %d of %d conns routed'
                               % (self.ns, len(routed), len(names)))

    def proc(self, name):
        return self.g.run(['cat', '/proc/%d/%s' % (self.pid, name)]).stdout

    def cpu_seconds(self):
        fields = self.proc('stat').rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100.0  # USER_HZ

    def rss_mib(self):
        match = re.search(r'^VmRSS:\s+(\d+) kB', self.proc('status'), re.M)
        return int(match.group(1)) / 1024.0


def measure(g, count, workdir):
    text, secrets, names, peers = config(count)
    work = os.path.join(workdir, str(count))
    os.makedirs(work)
    path = os.path.join(work, 'pairs.secrets')
    with open(path, 'w') as f:
        f.write(secrets)
    os.chmod(path, 0o600)
    confs = {}
    for side, body in (('a', with_alias(text)),
                       ('b', with_alias(mirrored(text)))):
        confs[side] = os.path.join(work, '%s.conf' % side)
        with open(confs[side], 'w') as f:
            f.write('config setup\n\n' + body)
    empty = os.path.join(work, 'empty.conf')
    with open(empty, 'w') as f:
        f.write('config setup\n')
    batch = os.path.join(work, 'peers.batch')
    with open(batch, 'w') as f:
        f.writelines('addr add %s/32 dev lo\n' % p for p in peers)
    a, b = 'a%d' % count, 'b%d' % count
    g.run(['/bin/sh', '-ec', '\n'.join([
        'ip netns add %s' % a, 'ip netns add %s' % b,
        'ip link add va type veth peer name vb',
        'ip link set va netns %s' % a, 'ip link set vb netns %s' % b,
        'ip -n %s link set lo up' % a, 'ip -n %s link set lo up' % b,
        'ip -n %s addr add %s/32 dev lo' % (a, LOCAL),
        'ip -n %s -batch %s' % (b, batch),
        'ip -n %s link set va up' % a, 'ip -n %s link set vb up' % b,
        'ip -n %s route add 10.99.0.0/16 dev va' % a,
        'ip -n %s route add %s/32 dev vb' % (b, LOCAL)])])
    nodes = {}
    try:
        nodes['a'] = Node(g, work, a, empty, path)
        nodes['b'] = Node(g, work, b, empty, path)
        nodes['b'].load(confs['b'], names)
        nodes['a'].load(confs['a'], names)
        node = nodes['a']
        loaded_rss, cpu0 = node.rss_mib(), node.cpu_seconds()
        start = time.perf_counter()
        node.whack('--initiate', '--asynchronous', '--name', ALIAS)
        deadline = start + TIMEOUT
        while True:
            status = libreswan.parse_status(node.whack('--status').stdout)
            up = sum(1 for n in names if n in status and
                     status[n].established)
            if up == count:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError('%d of %d SAs up after %d s'
                                   % (up, count, TIMEOUT))
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
        states = len(re.findall(r'^src ', g.run(
            ['ip', 'xfrm', 'state'], netns=a).stdout, re.M))
        return {'sas': count, 'establish_s': elapsed,
                'cpu_s': node.cpu_seconds() - cpu0,
                'rss_loaded_mib': loaded_rss,
                'rss_established_mib': node.rss_mib(),
                'xfrm_states': states}
    finally:
        for node in nodes.values():
            node.whack('--shutdown', check=False)
        g.run(['/bin/sh', '-c', 'ip netns pids %s | xargs -r kill -9; '
               'ip netns pids %s | xargs -r kill -9; ip netns del %s; '
               'ip netns del %s' % (a, b, a, b)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='100,250,500,1000')
    parser.add_argument('--json', metavar='FILE')
    args = parser.parse_args()
    why = guest.unavailable()
    if why:
        sys.exit('bench/establish.py: %s' % why)
    workdir = tempfile.mkdtemp(prefix='tripleo-ipsec-establish-')
    g = guest.Guest(workdir, timeout=3600)
    try:
        g.boot()
        g.run(['modprobe', '-a'] + list(overcloud.MODULES))
        results = run(g, workdir, [int(s) for s in args.sizes.split(',')])
    finally:
        g.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'results': results}, f, indent=1)
    return 0


def run(g, workdir, sizes):
    results = []
    print('%5s %10s %7s %9s %11s %7s %11s %10s'
          % ('SAs', 'establish', 'cpu_s', 'rss_load', 'rss_all_up',
             'states', 'ms_cpu/SA', 'ratio/SA'))
    for count in sizes:
        row = measure(g, count, workdir)
        base = results[0] if results else row
        row['ratio_per_sa'] = ((row['cpu_s'] / row['sas']) /
                               (base['cpu_s'] / base['sas']))
        results.append(row)
        print('%5d %9.1fs %7.1f %7.1fMi %9.1fMi %7d %11.1f %10.2f'
              % (count, row['establish_s'], row['cpu_s'],
                 row['rss_loaded_mib'], row['rss_established_mib'],
                 row['xfrm_states'], row['cpu_s'] / count * 1000,
                 row['ratio_per_sa']), flush=True)
    return results


if __name__ == '__main__':
    sys.exit(main())
