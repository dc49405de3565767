"""The operator's knobs: oslo.config options in group ``[ipsec]``.

``list_opts`` feeds ``oslo-config-generator --namespace tripleo_ipsec``.
``load`` turns a config file plus command-line overrides into one plain,
checked ``Options`` value that the planner takes.
"""

import dataclasses

from oslo_config import cfg

from tripleo_ipsec.errors import Error
from tripleo_ipsec import proposals

GROUP = 'ipsec'
FAILURE_POLICIES = ('private', 'private-or-clear')
LIBRESWAN_VERSIONS = ('4', '5')
DEFAULT_SKIP_NETWORKS = ('tenant', 'external', 'ctlplane')

OPTS = [
    cfg.ListOpt('skip_networks',
                default=list(DEFAULT_SKIP_NETWORKS),
                help='Networks left unencrypted. tenant traffic is the '
                     'tenant\'s own business (and VXLAN/Geneve is heavy), '
                     'external faces the outside world, and pre-shared-key '
                     'conns on ctlplane would cut the undercloud off. A name '
                     'that is not a network of the deployment is an error '
                     '(these three may be absent).'),
    cfg.StrOpt('ike',
               default='aes_gcm256-sha2_256-dh19',
               help='IKEv2 proposal (libreswan ike=), checked before use.'),
    cfg.StrOpt('esp',
               default='aes_gcm256',
               help='ESP proposal (libreswan esp=), checked before use.'),
    cfg.StrOpt('failure_policy',
               default='private',
               choices=[('private', 'drop traffic that has no SA'),
                        ('private-or-clear',
                         'send it in clear while no SA can be had')],
               help='What happens to traffic of a protected pair that has no '
                    'SA. private: dropped (fail closed). private-or-clear: '
                    'sent in clear while no SA can be had; for staging on a '
                    'live cloud before promoting to private.'),
    cfg.IntOpt('key_epoch',
               default=0, min=0,
               help='Key epoch mixed into every derived key; bump it to '
                    'rotate all pre-shared keys.'),
    cfg.StrOpt('libreswan_version',
               default='4',
               choices=[('4', 'libreswan 4.x'), ('5', 'libreswan 5.x')],
               help='Major version of libreswan on the nodes; selects the '
                    'ipsec.conf syntax (4: ikev2=insist, 5: '
                    'keyexchange=ikev2).'),
    cfg.DictOpt('vip_networks',
                default={},
                help='Network that carries each VIP that is not named after '
                     'its network, e.g. redis:internal_api,'
                     'ovn_dbs:internal_api (THT ServiceNetMap RedisNetwork '
                     'and OvnDbsNetwork). A VIP not listed here is placed on '
                     'the network whose subnet holds it.'),
]


def list_opts():
    return [(GROUP, OPTS)]


@dataclasses.dataclass(frozen=True)
class Options(object):
    skip_networks: tuple = DEFAULT_SKIP_NETWORKS
    ike: str = 'aes_gcm256-sha2_256-dh19'
    esp: str = 'aes_gcm256'
    failure_policy: str = 'private'
    key_epoch: int = 0
    libreswan_version: str = '4'
    vip_networks: tuple = ()     # sorted (vip, network) pairs

    def __post_init__(self):
        # what gets rendered is the checked, normalised text
        object.__setattr__(self, 'ike', proposals.check('IKE', self.ike))
        object.__setattr__(self, 'esp', proposals.check('ESP', self.esp))
        if self.failure_policy not in FAILURE_POLICIES:
            raise Error('failure policy %r is not one of %s'
                        % (self.failure_policy, ', '.join(FAILURE_POLICIES)))
        if self.libreswan_version not in LIBRESWAN_VERSIONS:
            raise Error('libreswan version %r is not one of %s'
                        % (self.libreswan_version,
                           ', '.join(LIBRESWAN_VERSIONS)))
        if (not isinstance(self.key_epoch, int) or
                isinstance(self.key_epoch, bool) or self.key_epoch < 0):
            raise Error('key epoch must be a whole number >= 0, not %r'
                        % (self.key_epoch,))

    def to_dict(self):
        data = dataclasses.asdict(self)
        data['skip_networks'] = list(self.skip_networks)
        data['vip_networks'] = dict(self.vip_networks)
        return data


def _read(config_files):
    """[ipsec] values from the config files; errors never echo file text."""
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
    values['vip_networks'] = tuple(sorted(dict(values['vip_networks'])
                                          .items()))
    return Options(**values)
