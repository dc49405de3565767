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

"""``tripleo-ipsec``: inventory, plan and render from the command line.

Errors are one line on stderr and a non-zero exit; ``render`` leaves no
output directory behind when it fails.
"""

import argparse
import json
import logging
import os
import signal
import sys

from oslo_config import types as types_mod
import yaml

from tripleo_ipsec.errors import Error
from tripleo_ipsec import keys
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import options as options_mod
from tripleo_ipsec import plan as plan_mod
from tripleo_ipsec import render
from tripleo_ipsec import sources
from tripleo_ipsec import topology

PROG = 'tripleo-ipsec'


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write('%s: error: %s\n' % (PROG, message))
        sys.exit(2)


def _add_source(parser):
    group = parser.add_argument_group('where the deployment comes from')
    src = group.add_mutually_exclusive_group(required=True)
    src.add_argument('--stack-outputs', metavar='FILE',
                     help='saved Heat stack outputs (JSON or YAML): Heat\'s '
                          'list, "openstack stack output show --all" or a '
                          'plain mapping')
    src.add_argument('--stack', metavar='NAME',
                     help='read the outputs of this live stack with '
                          'python-heatclient')
    src.add_argument('--inventory', metavar='FILE',
                     help='a tripleo-common inventory, as config-download '
                          'saves it (tripleo-ansible-inventory.yaml)')
    group.add_argument('--os-cloud', metavar='CLOUD',
                       help='clouds.yaml entry for --stack')
    group.add_argument('--net-cidr-map', metavar='FILE',
                       help='network -> CIDR(s), as THT\'s '
                            'ServiceData.net_cidr_map (JSON or YAML)')
    group.add_argument('--net-vip-map', metavar='FILE',
                       help='VIP name -> address, as THT\'s VipMap '
                            '(config-download\'s net_vip_map); with '
                            '--inventory, for VIPs it lacks (ovn_dbs)')
    group.add_argument('--net-mtu-map', metavar='FILE',
                       help='network -> link MTU, as network_data\'s mtu '
                            '(JSON or YAML); default, the inventory\'s '
                            '<network>_mtu')
    group.add_argument('--plan-name', metavar='NAME',
                       help='the plan (stack) name the inventory uses '
                            '(default: the --stack name, or overcloud)')


def _list(text):
    return [n for n in text.split(',') if n.strip()]


def _add_options(parser):
    group = parser.add_argument_group(
        'options (override [ipsec] in --config-file)')
    group.add_argument('--config-file', action='append', default=[],
                       metavar='PATH', help='oslo.config file; repeatable')
    types = {'ListOpt': _list, 'DictOpt': _pairs, 'IntOpt': int,
             'BoolOpt': _bool}
    for knob in options_mod.KNOBS:
        group.add_argument(
            '--' + knob.name.replace('_', '-'), dest=knob.name,
            type=types.get(type(knob.opt).__name__),
            choices=knob.choices or None, metavar=knob.metavar,
            help=knob.summary)


def _bool(text):
    try:
        return types_mod.Boolean()(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not true or false'
                                         % (text[:40],))


def _pairs(text):
    try:
        return dict(p.split(':', 1) for p in text.split(',') if p)
    except ValueError:
        raise argparse.ArgumentTypeError('expected VIP:NET[,VIP:NET...]')


def _add_format(parser):
    parser.add_argument('-f', '--format', choices=('json', 'yaml', 'table'),
                        default='table', help='output format')


def build_parser():
    parser = _Parser(prog=PROG, description='Encrypt every network of a '
                     'TripleO overcloud with IPsec (libreswan).')
    parser.add_argument('--debug', action='store_true',
                        help='log what happens, to stderr')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                parser_class=_Parser)
    sub.required = True
    inv = sub.add_parser('inventory', help='the inventory tripleo-common '
                         'builds from the stack outputs')
    _add_source(inv)
    _add_format(inv)
    pln = sub.add_parser('plan', help='which conns every host gets')
    _add_source(pln)
    _add_options(pln)
    _add_format(pln)
    ren = sub.add_parser('render', help='write every host\'s files')
    _add_source(ren)
    _add_options(ren)
    ren.add_argument('--master-key-file', required=True, metavar='KEY',
                     help='the deployment\'s master key (base64, mode 0600)')
    ren.add_argument('--create-master-key', action='store_true',
                     help='create KEY (0600, random) when it does not exist')
    ren.add_argument('--out', required=True, metavar='DIR',
                     help='output: DIR/<host>/etc/ipsec.d/... per host')
    _add_format(ren)
    ver = sub.add_parser('verify', help='on a node: which expected conns '
                         'have an established IPsec SA')
    ver.add_argument('--manifest', metavar='FILE',
                     default='/' + names.MANIFEST,
                     help='the installed manifest (default: %(default)s)')
    ver.add_argument('--ctlsocket', metavar='PATH',
                     default=names.CTLSOCKET,
                     help='pluto\'s control socket (default: %(default)s)')
    ver.add_argument('--vips', action='store_true',
                     help='also expect SAs on the conns towards VIPs')
    _add_format(ver)
    return parser


def _outputs(args):
    if args.stack_outputs:
        return sources.load_outputs(args.stack_outputs)
    if not args.os_cloud:
        raise Error('--stack needs --os-cloud')
    return sources.outputs_from_heat(args.os_cloud, args.stack)


def _options(args):
    return options_mod.load(args.config_file, **{
        knob.name: getattr(args, knob.name) for knob in options_mod.KNOBS})


def _plan_name(args):
    return args.plan_name or args.stack or 'overcloud'


def _topology(args, opts):
    cidrs = sources.load_mapping(args.net_cidr_map, 'net_cidr_map')
    vips = sources.load_mapping(args.net_vip_map, 'net_vip_map')
    mtus = sources.load_mapping(args.net_mtu_map, 'net_mtu_map')
    vip_networks = dict(opts.vip_networks)
    if args.inventory:
        return topology.build(sources.load_inventory(args.inventory), vips,
                              cidrs, vip_networks, mtus)
    return sources.topology_of(_outputs(args), cidrs, vip_networks,
                               _plan_name(args), vips=vips or None,
                               net_mtu_map=mtus)


def _print(fmt, data, rows, header):
    if fmt == 'json':
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write('\n')
    elif fmt == 'yaml':
        yaml.safe_dump(data, sys.stdout, default_flow_style=False)
    else:
        table = [header] + [[str(c) for c in r] for r in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        line = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'
        print(line)
        for i, row in enumerate(table):
            print('| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths))
                  + ' |')
            if i == 0:
                print(line)
        print(line)


def cmd_inventory(args):
    if args.inventory:
        inv = sources.load_inventory(args.inventory)
    else:
        inv = sources.inventory(_outputs(args), _plan_name(args))
    hostvars = inv.get('_meta', {}).get('hostvars', {})
    rows = [(h, ', '.join(sorted(k[:-3] for k in v if k.endswith('_ip'))))
            for h, v in sorted(hostvars.items())]
    _print(args.format, inv, rows, ['host', 'networks'])


def _warn_budget(the_plan):
    for line in the_plan.over_budget():
        sys.stderr.write('%s: warning: %s\n' % (PROG, line))


def cmd_plan(args):
    opts = _options(args)
    the_plan = plan_mod.build(_topology(args, opts), opts)
    loads = the_plan.load
    rows = [(name, h.role, loads[name]['conns'], loads[name]['child_sas'],
             loads[name]['xfrm_states'],
             ', '.join(sorted({c.network for c in h.conns} |
                              {g.network for g in h.groups})))
            for name, h in sorted(the_plan.hosts.items())]
    _print(args.format, the_plan.to_dict(), rows,
           ['host', 'role', 'conns', 'SAs (max)', 'xfrm states (max)',
            'networks'])
    if args.format == 'table':
        # the mode, and why (auto's choice)
        print('mode: %s (%s)%s' % (
            the_plan.mode, the_plan.mode_reason,
            ': SAs on demand, one group conn per network'
            if the_plan.mode == plan_mod.GROUP else ''))
        rows = [(net, entry['link'] or 'unknown', family,
                 entry[family]['inner'], entry[family]['ping'])
                for net, entry in sorted(the_plan.mtu.items())
                for family in ('ipv4', 'ipv6') if family in entry]
        rows += [(net, 'unknown', '-', '-', '-')
                 for net, entry in sorted(the_plan.mtu.items())
                 if not entry['link']]
        _print(args.format, None, rows, ['network', 'link MTU', 'family',
                                         'inner MTU', 'ping -M do -s'])
    _warn_budget(the_plan)


def cmd_render(args):
    opts = _options(args)
    the_plan = plan_mod.build(_topology(args, opts), opts)
    created = False
    if args.create_master_key and not os.path.lexists(args.master_key_file):
        master, created = keys.create(args.master_key_file), True
    else:
        master = keys.load(args.master_key_file)
    try:
        written = render.write(the_plan, master, args.out)
    except BaseException:
        # a key nothing was rendered with is not left behind
        if created:
            os.unlink(args.master_key_file)
        raise
    data = {'out': args.out,
            'hosts': {h: {'files': n,
                          'conns': len(the_plan.hosts[h].conns)}
                      for h, n in sorted(written.items())}}
    rows = [(h, v['files'], v['conns']) for h, v in data['hosts'].items()]
    _print(args.format, data, rows, ['host', 'files', 'conns'])
    _warn_budget(the_plan)


def _auth(conn, held):
    """How a conn authenticates, for verify's table."""
    if not conn.get('auth'):
        return '-'
    if conn['auth'] != 'rsasig' or not conn.get('cert'):
        return 'psk' if conn['auth'] == 'secret' else conn['auth']
    cert = held.get(conn['cert'], {})
    return 'cert %s (SN %s, %s days left)' % (
        conn['cert'], cert.get('serial', '?'), cert.get('days_left', '?'))


def cmd_verify(args):
    try:
        report = libreswan.verify_node(args.manifest, args.ctlsocket,
                                       args.vips)
    except libreswan.LibreswanError as exc:
        raise Error(str(exc))
    held = report.get('certs', {})
    rows = [(name, 'yes' if conn['established'] else 'NO',
             conn.get('ipsec_sa', '-'), _auth(conn, held)) for name, conn in
            sorted(report['conns'].items())]
    _print(args.format, report, rows, ['conn', 'established', 'ipsec SA',
                                       'auth'])
    if not report['ok']:
        raise Error(libreswan.missing_message(report))


COMMANDS = {'inventory': cmd_inventory, 'plan': cmd_plan,
            'render': cmd_render, 'verify': cmd_verify}


class Terminated(BaseException):
    """SIGTERM, SIGHUP or SIGINT: unwinds like an error, so cleanups run.

    A BaseException, as KeyboardInterrupt is: a library's ``except
    Exception`` must not turn it into its own error (jinja2's lexer did,
    when the signal landed in a codec import: exit 1 instead of 143).
    """


def _terminate(signum, frame):
    raise Terminated(signal.Signals(signum).name)


def main(argv=None):
    # render's temporary tree holds secrets: a kill that can be caught
    # unwinds through its cleanup instead of ending the process on the spot
    # (^C included: one line, not a traceback)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _terminate)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format='%(name)s: %(levelname)s: %(message)s')
    try:
        COMMANDS[args.command](args)
    except Error as exc:
        sys.stderr.write('%s: error: %s\n' % (PROG, exc))
        return 1
    except Terminated as exc:
        sys.stderr.write('%s: error: stopped by %s\n'
                         % (PROG, exc))
        return 128 + getattr(signal, str(exc))
    except BrokenPipeError:
        # the reader went away (| head): nothing left worth saying
        sys.stderr.close()
        return 1
    except OSError as exc:
        sys.stderr.write('%s: error: %s%s\n'
                         % (PROG, exc.strerror or exc,
                            ': %s' % exc.filename if exc.filename else ''))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
