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

"""python -m tripleo_ipsec_lab: run the lab scenario, print a summary.

Parsing the arguments needs the standard library and ``synth`` only, so
``--help`` works before anything is installed (``tools/demo --help``).
"""

import argparse
import ipaddress
import os
import sys
import time

from tripleo_ipsec_lab import synth


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m tripleo_ipsec_lab',
        description='Deploy tripleo-ipsec on a simulated overcloud in a '
                    'User-Mode-Linux guest and prove it on the wire.')
    parser.add_argument('--out', default=os.path.join(
        '/var/tmp/tripleo-ipsec-lab', time.strftime('%Y%m%d-%H%M%S')),
        help='output directory (report.json, pcaps, logs)')
    parser.add_argument('--controllers', type=int, default=3)
    parser.add_argument('--computes', type=int, default=2)
    parser.add_argument('--network', action='append', metavar='NAME=CIDR',
                        help='give one of the networks (ctlplane, external, '
                        'internal_api, storage, storage_mgmt, tenant) '
                        'another subnet, IPv4 or IPv6; repeatable')
    parser.add_argument('--timeout', type=int, default=1200,
                        help='the guest is killed after this many seconds '
                        '(default: %(default)s)')
    parser.add_argument('--failover', type=int, default=0, metavar='MOVES',
                        help='also move the internal_api VIP MOVES times, '
                        'with our agent and with tripleo-ipsec\'s road '
                        'warrior and the stock ocf:heartbeat:ipsec')
    parser.add_argument('--cluster', action='store_true',
                        help='with --failover: then the same moves by a '
                        'real corosync + pacemaker cluster of the '
                        'controllers')
    parser.add_argument('--only', action='append', metavar='PHASE',
                        choices=('exemptions', 'mtu', 'restart', 'scale-out',
                                 'iperf3', 'bring-up'),
                        help='run only these of the optional phases '
                        '(repeatable; default: all)')
    parser.add_argument('--mode', choices=('mesh', 'group'),
                        help='deploy with this IpsecMode (default: the '
                        'option\'s own, auto)')
    parser.add_argument('--rotation', action='store_true',
                        help='after the rerun: key rotation, psk -> cert '
                        'and certificate renewal, each under 10 ms pings '
                        'on every pair and to every VIP and a TCP stream '
                        'per network; the lab stays in auth cert after it')
    args = parser.parse_args(argv)
    networks = dict(synth.DEFAULT_NETWORKS)
    for item in args.network or ():
        name, _, cidr = item.partition('=')
        if name not in networks:
            parser.error('--network: no network %r (one of %s)'
                         % (name, ', '.join(sorted(networks))))
        try:
            networks[name] = (str(ipaddress.ip_network(cidr)),)
        except ValueError as e:
            parser.error('--network %s: %s' % (item, e))
    if os.path.exists(os.path.join(args.out, 'report.json')):
        parser.error('%s already holds a report' % args.out)
    from tripleo_ipsec_lab import run
    report = run.Lab(args.out, args.controllers, args.computes,
                     args.timeout, failover=args.failover,
                     networks=networks, cluster=args.cluster,
                     rotation=args.rotation, only=args.only,
                     mode=args.mode).run()
    return 0 if report['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
