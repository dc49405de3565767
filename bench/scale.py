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

"""Plan + render at 50, 100, 250 and 500 nodes: wall time and peak memory.

    python bench/scale.py [--sizes 50,100,250,500] [--layouts stock,mesh]
                          [--json FILE]

Each size runs in a fresh child process, so its peak RSS is its own.  The
overcloud has 3 controllers, 3 Ceph nodes and the rest computes, on 5
networks besides ctlplane (internal_api, storage, storage_mgmt, tenant,
external) with 8 VIPs (ctlplane, external, internal_api, storage,
storage_mgmt and tenant, plus redis and ovn_dbs).  Two layouts:

- ``stock``: roles on the networks THT's stock roles use, default options
  (tenant, external and ctlplane skipped).  The target applies here.
- ``mesh``: every node on every network and every network but ctlplane
  protected: the worst case, 2.5x the conns, reported for honesty.

Growth is reported against the smallest size of the same layout measured in
the same run, next to the growth in conns, so the ratio says whether the
cost is linear in the output.  Target: 500 nodes in under 10 s and 1 GiB.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

TARGET_SECONDS = 10.0
TARGET_BYTES = 1 << 30
NETWORKS = {
    'ctlplane': ('192.168.0.0/16',),
    'external': ('10.0.0.0/16',),
    'internal_api': ('172.16.0.0/16',),
    'storage': ('172.17.0.0/16',),
    'storage_mgmt': ('172.18.0.0/16',),
    'tenant': ('172.19.0.0/16',),
}


def one(size, layout, out):
    """Run in the child: build, plan, render; print one JSON line."""
    from tripleo_ipsec import keys
    from tripleo_ipsec import options
    from tripleo_ipsec import plan
    from tripleo_ipsec import render
    from tripleo_ipsec import sources
    from tripleo_ipsec_lab import synth

    if layout == 'stock':
        roles = [synth.controller(3), synth.ceph(3), synth.compute(size - 6)]
        opts = options.Options()
    else:
        every = tuple(NETWORKS)
        roles = [synth.Role('Controller', 3, every,
                            synth.CONTROLLER_SERVICES,
                            '%stackname%-controller-%index%'),
                 synth.Role('Compute', size - 3, every,
                            synth.COMPUTE_SERVICES,
                            '%stackname%-novacompute-%index%')]
        opts = options.Options(skip_networks=('ctlplane',))
    outputs = synth.stack_outputs(
        roles, NETWORKS, vip_networks=synth.VIP_NETWORKS + ('tenant',))
    key = keys.MasterKey(os.urandom(64))
    t0 = time.perf_counter()
    topo = sources.topology_of(outputs, synth.net_cidr_map(NETWORKS))
    t1 = time.perf_counter()
    the_plan = plan.build(topo, opts)
    t2 = time.perf_counter()
    written = render.write(the_plan, key, out)
    t3 = time.perf_counter()
    conns = sum(len(h.conns) for h in the_plan.hosts.values())
    print(json.dumps({
        'layout': layout, 'nodes': size, 'vips': len(topo.vips),
        'conns': conns,
        'files': sum(written.values()),
        'topology_s': t1 - t0, 'plan_s': t2 - t1, 'render_s': t3 - t2,
        'total_s': t3 - t0,
        'peak_rss_bytes': resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='50,100,250,500')
    parser.add_argument('--layouts', default='stock,mesh')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the results here')
    parser.add_argument('--child', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--layout', help=argparse.SUPPRESS)
    parser.add_argument('--out', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return one(args.child, args.layout, args.out)

    results, ok = [], True
    print('%6s %6s %5s %9s %7s %7s %8s %8s %9s %7s %7s %7s'
          % ('layout', 'nodes', 'vips', 'conns', 'topo_s', 'plan_s',
             'render_s', 'total_s', 'peak_MiB', 'x_time', 'x_mem',
             'x_conns'))
    for layout in args.layouts.split(','):
        rows = []
        for size in [int(s) for s in args.sizes.split(',')]:
            tmp = tempfile.mkdtemp(prefix='tripleo-ipsec-bench-')
            try:
                proc = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), '--child',
                     str(size), '--layout', layout,
                     '--out', os.path.join(tmp, 'out')],
                    capture_output=True, text=True, check=True, timeout=900)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        base = rows[0]
        for r in rows:
            r['time_ratio'] = r['total_s'] / base['total_s']
            r['memory_ratio'] = r['peak_rss_bytes'] / base['peak_rss_bytes']
            r['conns_ratio'] = r['conns'] / base['conns']
            print('%6s %6d %5d %9d %7.2f %7.2f %8.2f %8.2f %9.0f %7.1f '
                  '%7.1f %7.1f'
                  % (layout, r['nodes'], r['vips'], r['conns'],
                     r['topology_s'], r['plan_s'], r['render_s'],
                     r['total_s'], r['peak_rss_bytes'] / 2**20,
                     r['time_ratio'], r['memory_ratio'], r['conns_ratio']))
        results.extend(rows)
        if layout == 'stock':
            largest = rows[-1]
            ok = (largest['total_s'] < TARGET_SECONDS and
                  largest['peak_rss_bytes'] < TARGET_BYTES)
            print('target (stock, %d nodes: < %.0f s, < %d MiB): %s'
                  % (largest['nodes'], TARGET_SECONDS, TARGET_BYTES >> 20,
                     'met' if ok else 'MISSED'))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'results': results, 'target_met': ok}, f, indent=1)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
