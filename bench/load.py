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

"""Loading N conns into one pluto: our bulk path vs one call per conn.

    python bench/load.py [--sizes 250,500,1000] [--json FILE]

Run as root: each measurement gets a fresh pluto in a scratch network
namespace (only ``lo``, nothing leaves it).  The conns are the ones
tripleo-ipsec renders for a node with N peers on one network (one shared
``also=`` section, ``auto=ondemand``).

- ``bulk``: what the tripleo_ipsec role does, ``Libreswan.add``: one
  ``ipsec addconn`` naming every conn of a file of just those conns, then
  one ``whack --route`` by the alias they carry for this load, which
  installs every conn's trap policy (checked: all of them routed).
- ``one-by-one``: how tripleo-ipsec's old role and linux-system-roles load,
  one ``ipsec auto --add <conn>`` per conn against the whole config (each
  call parses it again); it only adds, it does not route.

Both are timed in the same run; the ratio is one-by-one / bulk.  Target:
1,000 conns in under 15 s, and bulk at least 10x faster at 1,000.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests import pluto  # noqa: E402
from tripleo_ipsec.node import libreswan  # noqa: E402

TARGET_SECONDS = 15.0
TARGET_RATIO = 10.0
LOCAL = '10.99.0.10'     # overcloud-controller-0 in config()


def node(count):
    """overcloud-controller-0 of a cloud with COUNT computes on one network.

    Returns (its HostPlan, its rendered files).
    """
    from tripleo_ipsec import keys
    from tripleo_ipsec import options
    from tripleo_ipsec import plan
    from tripleo_ipsec import render
    from tripleo_ipsec import sources
    from tripleo_ipsec_lab import synth

    networks = {'ctlplane': ('192.168.0.0/16',),
                'internal_api': ('10.99.0.0/16',)}
    roles = [synth.Role('Controller', 1, tuple(networks), (),
                        '%stackname%-controller-%index%'),
             synth.Role('Compute', count, tuple(networks), (),
                        '%stackname%-novacompute-%index%')]
    topo = sources.topology_of(synth.stack_outputs(
        roles, networks, service_vips=False, vip_networks=()))
    the_plan = plan.build(topo, options.Options())
    host = 'overcloud-controller-0'
    return the_plan.hosts[host], render.host_files(
        the_plan, host, keys.MasterKey(os.urandom(64)))


def config(count):
    """One node's rendered conns, with COUNT peers on one network.

    Returns (conf text, conn names).
    """
    from tripleo_ipsec.node import names
    host, files = node(count)
    return (files[names.network_conf('internal_api')][0],
            [c.name for c in host.conns])


def measure(count, mode, workdir):
    text, names = config(count)
    conf = os.path.join(workdir, 'conns.conf')
    top = os.path.join(workdir, 'ipsec.conf')
    with open(conf, 'w') as f:
        f.write(text)
    with open(top, 'w') as f:
        f.write('config setup\n\ninclude %s\n' % conf)
    scratch = pluto.ScratchPluto(['%s' % LOCAL])
    try:
        lw = libreswan.Libreswan(
            scratch.ctl, 600, ('ip', 'netns', 'exec', scratch.netns,
                               'ipsec'))
        start = time.perf_counter()
        if mode == 'bulk':
            lw.add(libreswan.split_conf(text), names)
        else:
            for name in names:
                pluto.run(['ip', 'netns', 'exec', scratch.netns, 'ipsec',
                           'auto', '--config', top, '--ctlsocket',
                           scratch.ctl, '--add', name], timeout=600,
                          check=True)
        elapsed = time.perf_counter() - start
        status = lw.status()
        loaded = set(status) & set(names)
        if len(loaded) != count:
            raise RuntimeError('%s: %d of %d conns loaded'
                               % (mode, len(loaded), count))
        routed = {n for n in loaded if status[n].routing != 'unrouted'}
        if mode == 'bulk' and routed != loaded:
            raise RuntimeError('bulk: %d of %d conns routed'
                               % (len(routed), count))
        return elapsed
    finally:
        scratch.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='250,500,1000')
    parser.add_argument('--json', metavar='FILE')
    args = parser.parse_args()
    why = pluto.available()
    if why:
        sys.exit('bench/load.py: %s' % why)
    workdir = tempfile.mkdtemp(prefix='tripleo-ipsec-load-')
    results = []
    try:
        print('%6s %9s %12s %7s %12s'
              % ('conns', 'bulk_s', 'one_by_one_s', 'ratio', 'bulk_per_conn'))
        for count in [int(s) for s in args.sizes.split(',')]:
            bulk = measure(count, 'bulk', workdir)
            single = measure(count, 'one-by-one', workdir)
            row = {'conns': count, 'bulk_s': bulk, 'one_by_one_s': single,
                   'ratio': single / bulk}
            results.append(row)
            print('%6d %9.2f %12.2f %7.1f %10.1fms'
                  % (count, bulk, single, row['ratio'],
                     bulk / count * 1000), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    largest = results[-1]
    ok = (largest['bulk_s'] < TARGET_SECONDS and
          largest['ratio'] >= TARGET_RATIO)
    print('target (%d conns: bulk < %.0f s, >= %.0fx one-by-one): %s'
          % (largest['conns'], TARGET_SECONDS, TARGET_RATIO,
             'met' if ok else 'MISSED'))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'results': results, 'target_met': ok}, f, indent=1)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
