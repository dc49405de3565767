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

"""The operator's knobs: oslo.config options in group ``[ipsec]``.

``list_opts`` feeds ``oslo-config-generator --namespace tripleo_ipsec``.
``load`` turns a config file plus command-line overrides into one plain,
checked ``Options`` value that the planner takes.
"""

import dataclasses
import os
import re
import stat
import typing

from oslo_config import cfg

from tripleo_ipsec.errors import Error
from tripleo_ipsec.node import names
from tripleo_ipsec.node import wire
from tripleo_ipsec import proposals

GROUP = 'ipsec'
IKE_PORTS = (500, 4500)
FAILURE_POLICIES = ('private', 'private-or-clear', 'disable')
AUTHS = ('psk', 'cert')
MODES = ('auto', 'mesh', 'group')
ENCAPSULATIONS = ('auto', 'yes', 'no')
DEFAULT_SKIP_NETWORKS = ('tenant', 'external', 'ctlplane')
# certmonger CA names (getcert -c) and the nodes' CA files: plain text
# only, since they reach getcert's and certutil's argv on every node
_CA_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}')
_PATH = re.compile(r'/[A-Za-z0-9_./-]{1,4095}')
# the role's variable for option <name> is tripleo_ipsec_<name>
ROLE_PREFIX = 'tripleo_ipsec_'


@dataclasses.dataclass(frozen=True)
class Knob(object):
    """One option, declared once.

    ``opt`` is the oslo.config option (its name, type, default, choices and
    help); the CLI flag, the role's variable and argument spec, and the Heat
    parameter are derived from it (``tools/generate.py`` writes the files
    that cannot import this module).  ``heat`` is the Heat parameter that
    sets it, None when THT gives the value some other way.
    """
    opt: cfg.Opt
    heat: typing.Optional[str]
    summary: str            # one line, for tables and --help
    metavar: typing.Optional[str] = None

    @property
    def name(self):
        return self.opt.dest

    @property
    def role_var(self):
        return ROLE_PREFIX + self.name

    @property
    def choices(self):
        return tuple(getattr(self.opt.type, 'choices', None) or ())

    @property
    def default(self):
        """The default as plain data (lists, dicts, str, int)."""
        value = self.opt.default
        return list(value) if isinstance(value, (list, tuple)) else value


KNOBS = (
    Knob(heat='IpsecSkipNetworks', metavar='NET[,NET...]',
         summary='networks left unencrypted; a name that is not a network '
                 'of the deployment is an error',
         opt=cfg.ListOpt(
             'skip_networks', default=list(DEFAULT_SKIP_NETWORKS),
             help='Networks left unencrypted. tenant traffic is the '
                  'tenant\'s own business (and VXLAN/Geneve is heavy), '
                  'external faces the outside world, and pre-shared-key '
                  'conns on ctlplane would cut the undercloud off. A name '
                  'that is not a network of the deployment is an error '
                  '(these three may be absent).')),
    Knob(heat='IpsecIkeProposal', metavar='PROPOSAL',
         summary='IKEv2 proposal (libreswan ike=)',
         opt=cfg.StrOpt(
             'ike', default='aes_gcm256-sha2_256-dh19',
             help='IKEv2 proposal (libreswan ike=), checked before use.')),
    Knob(heat='IpsecEspProposal', metavar='PROPOSAL',
         summary='ESP proposal (libreswan esp=)',
         opt=cfg.StrOpt(
             'esp', default='aes_gcm256',
             help='ESP proposal (libreswan esp=), checked before use.')),
    Knob(heat='IpsecFailurePolicy',
         summary='private (drop without SA, with the safety net), '
                 'private-or-clear (no net) or disable (remove every conn)',
         opt=cfg.StrOpt(
             'failure_policy', default='private',
             choices=[('private', 'drop traffic that has no SA'),
                      ('private-or-clear',
                       'passthrough shunts and no safety net'),
                      ('disable', 'remove every conn: all in clear')],
             help='What happens to traffic of a protected pair that has no '
                  'SA. private: dropped (fail closed), with the kernel '
                  'safety net. private-or-clear: the conns carry '
                  'passthrough shunts and there is no net; libreswan 4.x '
                  'still holds a pair whose peer stops (see the operator '
                  'guide), so it differs from private only where a node '
                  'has no conn for the pair. Changing between the two '
                  'replaces every conn. disable: the deploy removes every '
                  'conn, file and VIP resource: everything goes in '
                  'clear.')),
    Knob(heat='IpsecEncapsulation',
         summary='ESP in UDP 4500 (NAT-T): auto (behind a NAT only), yes '
                 '(always) or no (never)',
         opt=cfg.StrOpt(
             'encapsulation', default='auto',
             choices=[('auto', 'ESP in UDP only when IKE finds a NAT '
                               'between the ends'),
                      ('yes', 'always ESP in UDP on port 4500'),
                      ('no', 'never: plain ESP (IP protocol 50)')],
             help='ESP in UDP on port 4500 (NAT traversal, libreswan '
                  'encapsulation=). auto: only when IKE detects a NAT '
                  'between the two ends. yes: always, for networks whose '
                  'switches or firewalls pass UDP but not IP protocol 50; '
                  'it costs 8 more bytes per packet. no: never.')),
    Knob(heat='IpsecCompress', metavar='true|false',
         summary='IPComp before encryption (libreswan compress=yes)',
         opt=cfg.BoolOpt(
             'compress', default=False,
             help='Compress each packet with IPComp (deflate) before it is '
                  'encrypted (libreswan compress=yes), when both ends '
                  'agree. It saves bytes on the wire for compressible '
                  'traffic and costs CPU on every packet; off by '
                  'default.')),
    Knob(heat='IpsecClearExemptions', metavar='PROTO[/PORT][@NET][,...]',
         summary='traffic left in clear on the protected networks: tcp/22, '
                 'icmp, udp/123@storage; never IKE (udp/500, udp/4500, '
                 'all udp)',
         opt=cfg.ListOpt(
             'clear_exemptions', default=[],
             help='Traffic that stays in clear on the protected networks, '
                  'each PROTO[/PORT][@NET]: tcp, udp or icmp; a port for '
                  'tcp and udp (either end\'s: tcp/22 exempts SSH to and '
                  'from every node), required for udp; icmp only whole; '
                  'one network, or all protected ones. IKE (udp/500, '
                  'udp/4500, or udp without a port) is refused. Each '
                  'becomes a passthrough conn that beats every encrypted '
                  'one.')),
    Knob(heat='IpsecMode',
         summary='mesh (a conn per peer per network), group (one '
                 'opportunistic conn per network, SAs on demand) or auto '
                 '(group past IpsecConnBudget, else mesh)',
         opt=cfg.StrOpt(
             'mode', default='auto',
             choices=[('auto', 'group when a node\'s mesh would carry '
                               'more SAs than conn_budget, else mesh'),
                      ('mesh', 'one conn per peer per protected network, '
                               'all negotiated at start'),
                      ('group', 'one opportunistic conn per protected '
                                'network over its subnets, SAs negotiated '
                                'on the first packet')],
             help='How a node\'s conns are laid out. mesh: one conn per '
                  'peer per protected network, every SA negotiated when '
                  'pluto starts. group: one opportunistic conn per '
                  'protected network over all its subnets (libreswan policy '
                  'groups), SAs negotiated on a pair\'s first packet, one '
                  'key line per peer: every address of those subnets must '
                  'then speak IPsec or be exempted. auto: group once a '
                  'node\'s mesh would carry more SAs than conn_budget '
                  '(and every protected network has its subnets in '
                  'net_cidr_map), else mesh. The plan reports the mode and '
                  'why. '
                  'Changing modes replaces every conn.')),
    Knob(heat='IpsecConnBudget', metavar='SAS',
         summary='plan and render warn when a node would carry more SAs '
                 'than this (0: never)',
         opt=cfg.IntOpt(
             'conn_budget', default=500, min=0,
             help='Warn, in tripleo-ipsec plan and render and in the '
                  'deploy\'s render task, when a node would carry more '
                  'IPsec SAs than this: one per peer per protected network, '
                  'one per VIP it sends to or may hold. A restarted pluto '
                  'negotiates every one of them again before its node is '
                  'whole (bench/establish.py). 0 never warns.')),
    Knob(heat='IpsecMtuFloor', metavar='BYTES',
         summary='the plan fails when ESP leaves a protected network an '
                 'inner MTU below this (0: never)',
         opt=cfg.IntOpt(
             'mtu_floor', default=1280, min=0,
             help='The smallest inner MTU a protected network may be left '
                  'with: the plan (and so the deploy) fails when the '
                  'network\'s link MTU (network_data mtu) minus what ESP '
                  'adds for the ESP proposal, the address family and the '
                  'encapsulation is below it. 1280 is the least IPv6 '
                  'works with. 0 never fails.')),
    Knob(heat='IpsecKeyEpoch', metavar='N',
         summary='mixed into every key; bump it to rotate every key',
         opt=cfg.IntOpt(
             'key_epoch', default=0, min=0,
             help='Key epoch mixed into every derived key; bump it to '
                  'rotate all pre-shared keys.')),
    Knob(heat='IpsecAuth',
         summary='how the ends authenticate: psk (keys derived from the '
                 'master key) or cert (certificates from certmonger)',
         opt=cfg.StrOpt(
             'auth', default='psk',
             choices=[('psk', 'pre-shared keys, one per pair, derived '
                              'from the master key'),
                      ('cert', 'a certificate per node and network (and '
                               'per VIP), issued by cert_ca through '
                               'certmonger')],
             help='How the two ends of a conn authenticate. psk: a key per '
                  'pair derived from the master key. cert: certificates '
                  'that certmonger requests from cert_ca into libreswan\'s '
                  'NSS database and renews; needs cert_ca and cert_trust.')),
    Knob(heat='IpsecCertCa', metavar='CA',
         summary='the certmonger CA that issues the certificates (IPA with '
                 'TLS everywhere); needed with auth cert',
         opt=cfg.StrOpt(
             'cert_ca', default='',
             help='The certmonger CA (getcert -c) that issues every '
                  'certificate with auth = cert: IPA in a TLS-everywhere '
                  'deployment, or a CA the deployment registered on every '
                  'node with getcert add-ca. No default: a cert deploy '
                  'without it is refused before any node is touched. Set '
                  'with auth = psk, the certificates are issued and '
                  'tracked ahead of the switch, no conn touched.')),
    Knob(heat='IpsecCertTrust', metavar='PEM[,PEM...]',
         summary='CA certificate files on the nodes whose certificates are '
                 'trusted; list two while changing CA',
         opt=cfg.ListOpt(
             'cert_trust', default=['/etc/ipa/ca.crt'],
             help='PEM files on every node holding the CA certificates '
                  'that peers\' certificates must chain to; each is '
                  'imported into libreswan\'s NSS database as a trust '
                  'anchor. To change CA, list both, deploy, switch cert_ca, '
                  'deploy, then drop the old one.')),
    Knob(heat='CloudDomain', metavar='DOMAIN',
         summary='DNS domain of the certificates\' names '
                 '(<host>.<network>.<domain>)',
         opt=cfg.StrOpt(
             'cert_domain', default='localdomain',
             help='The DNS domain of every certificate\'s name, as THT\'s '
                  'fqdn_<network>: <host>.<network without _>.<domain>, and '
                  'vip-<vip>.<network>.<domain> for a VIP.')),
    Knob(heat='IpsecCertExpiryMarginDays', metavar='DAYS',
         summary='verify fails on a certificate that expires within this '
                 'many days',
         opt=cfg.IntOpt(
             'cert_margin_days', default=14, min=0,
             help='verify fails on a node whose certificate (as pluto '
                  'holds it) expires within this many days.')),
    # THT gives it from ServiceNetMap (RedisNetwork, OvnDbsNetwork)
    Knob(heat=None, metavar='VIP:NET[,VIP:NET...]',
         summary='the network of each service VIP (THT: ServiceNetMap '
                 'RedisNetwork, OvnDbsNetwork); unlisted ones are placed '
                 'by subnet',
         opt=cfg.DictOpt(
             'vip_networks', default={},
             help='Network that carries each VIP that is not named after '
                  'its network, e.g. redis:internal_api,ovn_dbs:internal_api '
                  '(THT ServiceNetMap RedisNetwork and OvnDbsNetwork). A VIP '
                  'not listed here is placed on the network whose subnet '
                  'holds it.')),
)
OPTS = [knob.opt for knob in KNOBS]


def list_opts():
    return [(GROUP, OPTS)]


_ANSIBLE_TYPES = {'ListOpt': 'list', 'StrOpt': 'str', 'IntOpt': 'int',
                  'DictOpt': 'dict', 'BoolOpt': 'bool'}


def argument_spec():
    """The options as an Ansible argument spec, by option name.

    The role's render module takes them under these names; the role's
    variables are ``tripleo_ipsec_<name>`` (meta/argument_specs.yml).
    """
    spec = {}
    for knob in KNOBS:
        kind = _ANSIBLE_TYPES[type(knob.opt).__name__]
        entry = {'type': kind, 'default': knob.default,
                 'description': knob.summary}
        if kind == 'list':
            entry['elements'] = 'str'
        if knob.choices:
            entry['choices'] = list(knob.choices)
        spec[knob.name] = entry
    return spec


def _plain(value):
    """Hashable, frozen defaults: lists -> tuples, dicts -> sorted pairs."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


class _Checked(object):

    def __post_init__(self):
        # what gets rendered is the checked, normalised text
        object.__setattr__(self, 'ike', proposals.check('IKE', self.ike))
        object.__setattr__(self, 'esp', proposals.check('ESP', self.esp))
        if self.failure_policy not in FAILURE_POLICIES:
            raise Error('failure policy %r is not one of %s'
                        % (self.failure_policy, ', '.join(FAILURE_POLICIES)))
        for name in self.skip_networks:
            if not names.valid_network(name):
                raise Error('skip_networks: %r is not a valid network name'
                            % (name,))
        for vip, net in self.vip_networks:
            for what, name in (('VIP', vip), ('network', net)):
                if not names.valid_network(name):
                    raise Error('vip_networks: %r is not a valid %s name'
                                % (name, what))
        for text in self.clear_exemptions:
            exemption(text)
        if self.encapsulation not in ENCAPSULATIONS:
            raise Error('encapsulation %r is not one of %s'
                        % (self.encapsulation, ', '.join(ENCAPSULATIONS)))
        if not isinstance(self.compress, bool):
            raise Error('compress must be true or false, not %r'
                        % (self.compress,))
        if self.mode not in MODES:
            raise Error('mode %r is not one of %s'
                        % (self.mode, ', '.join(MODES)))
        if self.auth not in AUTHS:
            raise Error('auth %r is not one of %s'
                        % (self.auth, ', '.join(AUTHS)))
        if self.auth == 'cert' and not self.cert_ca:
            raise Error('auth cert needs cert_ca (IpsecCertCa): the '
                        'certmonger CA that issues the certificates, IPA '
                        'with TLS everywhere')
        if self.auth == 'cert' and not self.cert_trust:
            raise Error('auth cert needs cert_trust (IpsecCertTrust): the '
                        'CA certificate files the nodes trust')
        if self.cert_ca and not _CA_NAME.fullmatch(self.cert_ca):
            raise Error('cert_ca %r is not a certmonger CA name'
                        % (self.cert_ca,))
        for path in self.cert_trust:
            if not _PATH.fullmatch(path):
                raise Error('cert_trust: %r is not an absolute path of '
                            'plain characters' % (path,))
        if not names.valid_host(self.cert_domain):
            raise Error('cert_domain %r is not a DNS domain'
                        % (self.cert_domain,))
        for what in ('key_epoch', 'cert_margin_days', 'conn_budget',
                     'mtu_floor'):
            value = getattr(self, what)
            if (not isinstance(value, int) or isinstance(value, bool) or
                    value < 0):
                raise Error('%s must be a whole number >= 0, not %r'
                            % (what.replace('_', ' '), value))

    def to_dict(self):
        data = dataclasses.asdict(self)
        data['skip_networks'] = list(self.skip_networks)
        data['cert_trust'] = list(self.cert_trust)
        data['clear_exemptions'] = list(self.clear_exemptions)
        data['vip_networks'] = dict(self.vip_networks)
        return data


# One field per knob, with the knob's default (lists as tuples, dicts as
# sorted (key, value) pairs): a frozen, checked value the planner takes.
Options = dataclasses.make_dataclass(
    'Options', [(k.name, object, dataclasses.field(default=_plain(k.default)))
                for k in KNOBS],
    bases=(_Checked,), frozen=True)
Options.__module__ = __name__
Options.__doc__ = 'The options a plan is made with (see KNOBS).'


def exemption(text):
    """``PROTO[/PORT][@NET]`` -> (proto, port or 0, network or '').

    Refused with one Error line: anything malformed, a port out of range,
    ICMP with a port (libreswan makes ``icmp TYPE CODE`` the type one way
    and the code the other: ICMP goes whole or not at all), UDP without
    one, and IKE's own ports.
    """
    match = wire.EXEMPTION.fullmatch(text) if isinstance(text, str) \
        else None
    if not match or match.group('proto') not in wire.EXEMPT_PROTOS:
        raise Error('clear_exemptions: %r is not PROTO[/PORT][@NET] with '
                    'PROTO one of %s' % (text, ', '.join(wire.EXEMPT_PROTOS)))
    proto, port = match.group('proto'), match.group('port')
    port = int(port) if port else 0
    if match.group('port') and not 1 <= port <= 65535:
        raise Error('clear_exemptions: %r: port %d is not 1-65535'
                    % (text, port))
    if proto == 'icmp' and match.group('port'):
        raise Error('clear_exemptions: %r: ICMP is exempted whole, with no '
                    'type or port' % (text,))
    if proto == 'udp' and port in (0,) + IKE_PORTS:
        raise Error('clear_exemptions: %r would exempt IKE itself (UDP %s)'
                    % (text, '/'.join(str(p) for p in IKE_PORTS)))
    return proto, port, match.group('net') or ''


def _read(config_files):
    """[ipsec] values from the config files; errors never echo file text."""
    for path in config_files:
        # oslo.config would wait on a FIFO and read a device to the end
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise Error('configuration file %s: %s' % (path, exc.strerror))
        if not stat.S_ISREG(mode):
            raise Error('configuration file %s: not a regular file' % path)
    conf = cfg.ConfigOpts()
    conf.register_opts(OPTS, group=GROUP)
    try:
        conf(args=[], project='tripleo-ipsec',
             default_config_files=list(config_files))
    except cfg.ConfigFilesNotFoundError as exc:
        raise Error('configuration file not found or unreadable: %s'
                    % ', '.join(exc.config_files))
    except cfg.ConfigFileParseError as exc:
        # its message quotes the offending line, which may be anything
        raise Error('configuration file %s is not in INI syntax'
                    % exc.config_file)
    except cfg.Error as exc:
        raise Error('configuration: %s' % type(exc).__name__)
    values = {}
    for opt in OPTS:
        try:
            values[opt.dest] = getattr(conf[GROUP], opt.dest)
        except (cfg.Error, ValueError):
            allowed = ''
            if getattr(opt.type, 'choices', None):
                allowed = ' (one of: %s)' % ', '.join(opt.type.choices)
            raise Error('configuration: [%s] %s has an invalid value%s'
                        % (GROUP, opt.dest, allowed))
    return values


def load(config_files=(), **overrides):
    """Options from oslo.config files, then ``overrides`` (None = unset)."""
    values = _read(config_files)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values['skip_networks'] = tuple(
        n.strip() for n in values['skip_networks'] if n.strip())
    values['cert_trust'] = tuple(
        p.strip() for p in values['cert_trust'] if p.strip())
    values['clear_exemptions'] = tuple(
        e.strip() for e in values['clear_exemptions'] if e.strip())
    values['vip_networks'] = tuple(sorted(dict(values['vip_networks'])
                                          .items()))
    return Options(**values)
