"""Stack outputs -> Topology: who is on which network, with which address.

The hosts, their roles and addresses come from tripleo-common's own
``TripleoInventory`` (the inventory config-download uses), fed with the
overcloud's Heat stack outputs: a saved file in any shape a user can get, or
a live stack through python-heatclient.  Inputs that would crash
tripleo-common, or that would make a broken mesh, are refused here with one
clear line.
"""

import contextlib
import dataclasses
import ipaddress
import json
import logging
import re
import types

import yaml

from tripleo_ipsec.errors import Error

LOG = logging.getLogger(__name__)

HOST_NETWORK = 'ctlplane'
PACEMAKER_GROUP = 'pacemaker'
# VIPs that THT names after a service, not after their network
SERVICE_VIPS = ('redis', 'ovn_dbs')
REQUIRED_OUTPUTS = ('RoleNetHostnameMap', 'RoleNetIpMap', 'ServerIdData')
_NETWORK_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
_HOST_NAME = re.compile(r'^[a-z0-9]([a-z0-9-]*[a-z0-9])?'
                        r'(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$')


@dataclasses.dataclass(frozen=True)
class Host(object):
    name: str
    role: str
    addresses: dict          # network -> address (normalised text)
    vip_holder: bool = False  # may hold VIPs (in the pacemaker group)
    excluded: bool = False    # blacklisted: neither configured nor keyed


@dataclasses.dataclass(frozen=True)
class Vip(object):
    name: str                # 'internal_api', 'redis', 'ovn_dbs', ...
    network: str
    address: str


@dataclasses.dataclass(frozen=True)
class Topology(object):
    hosts: tuple             # of Host, sorted by name
    networks: tuple          # every network any host is on, sorted
    vips: tuple              # of Vip, sorted by name
    cidrs: dict              # network -> tuple of CIDRs (may be empty)

    def members(self, network):
        """Hosts with an address on ``network``, sorted by name."""
        return [h for h in self.hosts if network in h.addresses]

    def to_dict(self):
        return dataclasses.asdict(self)


# -- reading stack outputs --------------------------------------------------

def parse_outputs(data, source='stack outputs'):
    """Any shape of stack outputs -> {output_key: output_value}.

    Accepted: Heat's list of ``{output_key, output_value}``; ``openstack
    stack show -f json`` (a mapping with ``outputs``); ``openstack stack
    output show --all -f json`` (key -> ``{output_value, ...}``); a plain
    key -> value mapping.
    """
    if isinstance(data, dict) and isinstance(data.get('outputs'), list):
        data = data['outputs']
    if isinstance(data, list):
        outputs = {}
        for item in data:
            if not (isinstance(item, dict) and 'output_key' in item):
                raise Error('%s: a list of outputs must hold mappings with '
                            'output_key and output_value' % source)
            outputs[item['output_key']] = item.get('output_value')
        return outputs
    if not isinstance(data, dict):
        raise Error('%s: expected a mapping or a list of outputs, not %s'
                    % (source, type(data).__name__))
    outputs = {}
    for key, value in data.items():
        if isinstance(value, str) and value.lstrip().startswith('{'):
            # "stack output show --all" can print each value as JSON text
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and 'output_value' in parsed:
                value = parsed
        if isinstance(value, dict) and 'output_value' in value:
            value = value['output_value']
        outputs[key] = value
    return outputs


def load_outputs(path):
    """Read a saved stack-outputs file (JSON or YAML, any shape)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise Error('stack outputs %s: %s' % (path, exc.strerror))
    except UnicodeDecodeError:
        raise Error('stack outputs %s: not a text file' % path)
    try:
        data = yaml.safe_load(text)      # JSON is YAML
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = ' at line %d' % (mark.line + 1) if mark else ''
        raise Error('stack outputs %s: not valid JSON or YAML%s'
                    % (path, where))
    if data is None:
        raise Error('stack outputs %s: the file is empty' % path)
    return parse_outputs(data, 'stack outputs %s' % path)


def outputs_from_heat(cloud, stack):
    """The outputs of a live stack, through python-heatclient."""
    from heatclient import client as heat_client
    from heatclient import exc as heat_exc
    import openstack
    try:
        conn = openstack.connect(cloud=cloud)
        heat = heat_client.Client(
            '1', session=conn.session,
            endpoint_override=conn.endpoint_for('orchestration'))
        found = heat.stacks.get(stack)
    except heat_exc.HTTPNotFound:
        raise Error('stack %s not found' % stack)
    except Exception as exc:     # keystone/cloud config errors of all kinds
        raise Error('stack %s: cannot read it from Heat: %s'
                    % (stack, str(exc).splitlines()[0] if str(exc) else
                       type(exc).__name__))
    return parse_outputs(found.outputs, 'stack %s' % stack)


# -- the inventory, as tripleo-common builds it ----------------------------

def _check_outputs(outputs):
    """Refuse outputs that would crash TripleoInventory or mislead it."""
    for key in REQUIRED_OUTPUTS:
        if key not in outputs:
            raise Error('stack outputs: required output %s is missing' % key)
    hostnames, ips = outputs['RoleNetHostnameMap'], outputs['RoleNetIpMap']
    server_ids = outputs['ServerIdData']
    for key, value in (('RoleNetHostnameMap', hostnames),
                       ('RoleNetIpMap', ips), ('ServerIdData', server_ids)):
        if not isinstance(value, dict):
            raise Error('stack outputs: %s must be a mapping' % key)
    if not isinstance(server_ids.get('server_ids'), dict):
        raise Error('stack outputs: ServerIdData has no server_ids mapping')
    for role, nets in hostnames.items():
        if not nets:
            continue
        names = nets.get(HOST_NETWORK) if isinstance(nets, dict) else None
        if not isinstance(names, list):
            raise Error('stack outputs: RoleNetHostnameMap.%s has no %s '
                        'hostnames' % (role, HOST_NETWORK))
        role_ips = ips.get(role)
        if not isinstance(role_ips, dict) or HOST_NETWORK not in role_ips:
            raise Error('stack outputs: RoleNetIpMap has no %s addresses '
                        'for role %s' % (HOST_NETWORK, role))
        for net, addresses in role_ips.items():
            if not isinstance(addresses, list) or len(addresses) < len(names):
                raise Error('stack outputs: RoleNetIpMap.%s.%s has %s '
                            'addresses for %d hosts'
                            % (role, net, len(addresses)
                               if isinstance(addresses, list) else 'no',
                               len(names)))
        ids = server_ids['server_ids'].get(role)
        if ids is not None and not isinstance(ids, list):
            raise Error('stack outputs: ServerIdData.server_ids.%s must be '
                        'a list' % role)
        if ids is not None and len(ids) < len(names):
            raise Error('stack outputs: ServerIdData.server_ids.%s has %d '
                        'ids for %d hosts' % (role, len(ids), len(names)))


def tripleo_inventory(outputs, plan='overcloud', **kwargs):
    """tripleo-common's TripleoInventory over these outputs, offline.

    It is given the outputs the way it asks python-heatclient for them;
    ``kwargs`` go to TripleoInventory (e.g. ``ansible_ssh_user``).
    """
    from tripleo_common.inventory import TripleoInventory
    _check_outputs(outputs)
    outputs = dict(outputs)
    ids = dict(outputs['ServerIdData'])
    # tripleo-common indexes server_ids per role; give it what it needs for
    # roles Heat listed without ids rather than let it crash.
    ids['server_ids'] = dict(ids['server_ids'])
    for role, nets in outputs['RoleNetHostnameMap'].items():
        count = len((nets or {}).get(HOST_NETWORK) or [])
        ids['server_ids'].setdefault(role, [None] * count)
    outputs['ServerIdData'] = ids
    stack = types.SimpleNamespace(outputs=[
        {'output_key': k, 'output_value': v} for k, v in outputs.items()])
    heat = types.SimpleNamespace(stacks=types.SimpleNamespace(
        get=lambda name: stack,
        environment=lambda name: {'parameter_defaults': {}}))
    return TripleoInventory(hclient=heat, plan_name=plan,
                            host_network=HOST_NETWORK, **kwargs)


@contextlib.contextmanager
def quiet():
    """tripleo-common logs at INFO at import and on every run."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def inventory(outputs, plan='overcloud'):
    """The Ansible inventory tripleo-common builds from these outputs."""
    inv = tripleo_inventory(outputs, plan)
    try:
        with quiet():
            data = inv.list(dynamic=True)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise Error('stack outputs: tripleo-common cannot build an '
                    'inventory from them (%s: %s)'
                    % (type(exc).__name__, exc))
    # ansible-core >= 2.19 wants a list of hosts, not a mapping
    excluded = data.get('excluded_overcloud', {})
    excluded['hosts'] = sorted(excluded.get('hosts') or [])
    return json.loads(json.dumps(data))


# -- the topology ----------------------------------------------------------

def _address(text, what):
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise Error('%s: %r is not an IP address' % (what, text))


def _cidrs(net_cidr_map):
    cidrs = {}
    for net, values in (net_cidr_map or {}).items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise Error('net_cidr_map.%s: expected a CIDR or a list of them'
                        % net)
        parsed = []
        for value in values:
            try:
                parsed.append(ipaddress.ip_network(str(value).strip(),
                                                   strict=False))
            except ValueError:
                raise Error('net_cidr_map.%s: %r is not a CIDR'
                            % (net, value))
        cidrs[net] = parsed
    return cidrs


def _inventory_vips(inv):
    """VIPs an inventory carries as group vars: <name>_vip."""
    vips = {}
    for group, body in inv.items():
        group_vars = body.get('vars', {}) if isinstance(body, dict) else {}
        for key, value in group_vars.items():
            if key.endswith('_vip') and isinstance(value, str) and value:
                vips.setdefault(key[:-len('_vip')], value)
    return vips


def _vip_network(name, address, members, cidrs, vip_networks):
    """Which network carries a service VIP (redis, ovn_dbs, ...)."""
    if name in vip_networks:
        net = vip_networks[name]
        if net not in members:
            raise Error('vip_networks: VIP %s is mapped to %s, which is not '
                        'a network of the deployment' % (name, net))
        return net
    known = [n for n in members if n in cidrs]
    if known:
        holding = [n for n in known if any(address in s for s in cidrs[n])]
    else:
        # No subnet data: the network whose member addresses share the
        # longest prefix with the VIP (TripleO networks are disjoint subnets).
        holding, best = [], -1
        for net, addrs in sorted(members.items()):
            for addr in addrs:
                if addr.version != address.version:
                    continue
                length = addr.max_prefixlen - (
                    int(addr) ^ int(address)).bit_length()
                if length > best:
                    holding, best = [net], length
                elif length == best and net not in holding:
                    holding.append(net)
    if len(holding) == 1:
        return holding[0]
    raise Error('cannot tell which network carries VIP %s (%s); set '
                'vip_networks, e.g. %s:internal_api' % (name, address, name))


def build(outputs, net_cidr_map=None, vip_networks=None, plan='overcloud'):
    """Stack outputs (a key -> value mapping) -> Topology."""
    vip_map = outputs.get('VipMap') or {}
    if not isinstance(vip_map, dict):
        raise Error('stack outputs: VipMap must be a mapping')
    return from_inventory(inventory(outputs, plan), vip_map, net_cidr_map,
                          vip_networks)


def load_inventory(path):
    """A saved tripleo-common inventory (static YAML or dynamic JSON)."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise Error('inventory %s: %s' % (path, exc.strerror))
    except yaml.YAMLError:
        raise Error('inventory %s: not valid JSON or YAML' % path)
    if not isinstance(data, dict):
        raise Error('inventory %s: expected a mapping of groups' % path)
    if '_meta' in data:
        return data
    # static: hosts are {name: vars} in their groups, children {name: {}}
    hostvars, dynamic = {}, {}
    for group, body in data.items():
        body = body if isinstance(body, dict) else {}
        hosts = body.get('hosts') or {}
        for name, hvars in hosts.items():
            hostvars.setdefault(name, {}).update(hvars or {})
        dynamic[group] = {'hosts': sorted(hosts),
                          'children': sorted(body.get('children') or {}),
                          'vars': body.get('vars') or {}}
    dynamic['_meta'] = {'hostvars': hostvars}
    return dynamic


def from_inventory(inv, vip_map=None, net_cidr_map=None, vip_networks=None):
    """A tripleo-common inventory (dynamic form) -> Topology.

    ``vip_map`` is THT's VipMap (config-download's ``net_vip_map``); VIPs
    the inventory carries as ``<name>_vip`` group vars are taken too.
    """
    hostvars = inv.get('_meta', {}).get('hostvars', {})
    cidrs = _cidrs(net_cidr_map)
    vip_networks = dict(vip_networks or {})
    holder_roles = set(inv.get(PACEMAKER_GROUP, {}).get('children', []))
    excluded = set(inv.get('excluded_overcloud', {}).get('hosts', []))

    roles = {}
    for group, body in inv.items():
        role_vars = body.get('vars', {}) if isinstance(body, dict) else {}
        if 'tripleo_role_name' in role_vars:
            roles[group] = (role_vars.get('tripleo_role_networks') or [],
                            body.get('hosts') or [])

    hosts, owner, members, role_of = [], {}, {}, {}
    for role in sorted(roles):
        networks, names = roles[role]
        for name in sorted(names):
            if not _HOST_NAME.match(name):
                raise Error('stack outputs: host name %r is not a valid '
                            'host name' % name)
            if name in role_of:
                raise Error('stack outputs: host %s is in two roles, %s and '
                            '%s' % (name, role_of[name], role))
            role_of[name] = role
            hvars = hostvars.get(name, {})
            ctlplane = hvars.get(HOST_NETWORK + '_ip')
            addresses = {}
            for net in networks:
                if not _NETWORK_NAME.match(net):
                    raise Error('stack outputs: network name %r is not a '
                                'valid network name' % net)
                text = hvars.get(net + '_ip')
                # THT's noop ports hand out the ctlplane address for networks
                # a role is not attached to: the host is not on that network.
                if not text or (net != HOST_NETWORK and text == ctlplane):
                    continue
                addr = _address(text, 'host %s, network %s' % (name, net))
                if addr in owner:
                    raise Error('duplicate address %s: host %s (%s) and host '
                                '%s (%s)' % ((addr,) + owner[addr] +
                                             (name, net)))
                owner[addr] = (name, net)
                if net in cidrs and not any(addr in s for s in cidrs[net]):
                    raise Error('host %s: address %s is in no subnet of '
                                'network %s (%s)'
                                % (name, addr, net,
                                   ', '.join(map(str, cidrs[net]))))
                addresses[net] = str(addr)
                members.setdefault(net, []).append(addr)
            hosts.append(Host(name=name, role=role, addresses=addresses,
                              vip_holder=role in holder_roles,
                              excluded=name in excluded))
    if not hosts:
        raise Error('stack outputs: no overcloud hosts found '
                    '(RoleNetHostnameMap lists none)')
    for name in sorted(excluded - {h.name for h in hosts}):
        LOG.warning('excluded host %s is not a host of the stack', name)
    for net in sorted(set(cidrs) - set(members)):
        LOG.info('net_cidr_map names network %s that no host is on', net)

    vips = []
    vip_map = dict(_inventory_vips(inv), **(vip_map or {}))
    unknown = sorted(set(vip_networks) - set(vip_map))
    if unknown:
        raise Error('vip_networks: VIP %s is not in the stack\'s VipMap'
                    % unknown[0])
    for name, text in sorted(vip_map.items()):
        if not text:
            continue
        if not _NETWORK_NAME.match(name):
            raise Error('stack outputs: VIP name %r is not valid' % name)
        addr = _address(text, 'VIP %s' % name)
        if name in vip_networks or name in SERVICE_VIPS:
            net = _vip_network(name, addr, members, cidrs, vip_networks)
        elif name in members:
            net = name
        else:
            LOG.info('VIP %s: no host is on network %s, left out', name, name)
            continue
        if addr in owner:
            raise Error('duplicate address %s: VIP %s and host %s (%s)'
                        % ((addr, name) + owner[addr]))
        owner[addr] = ('VIP', name)
        vips.append(Vip(name=name, network=net, address=str(addr)))

    hosts.sort(key=lambda h: h.name)
    return Topology(hosts=tuple(hosts), networks=tuple(sorted(members)),
                    vips=tuple(vips),
                    cidrs={n: tuple(str(c) for c in v)
                           for n, v in sorted(cidrs.items())})
