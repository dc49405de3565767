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

"""Reading the inputs: stack outputs, a live stack, a saved inventory.

Every file, Heat and tripleo-common call of the pipeline is here; what comes
out is plain data (outputs as a key -> value mapping, the inventory
tripleo-common builds from them) for ``topology.build``.
"""

import contextlib
import json
import logging
import os
import stat
import types

import yaml

from tripleo_ipsec.errors import Error
from tripleo_ipsec import topology

HOST_NETWORK = topology.HOST_NETWORK
REQUIRED_OUTPUTS = ('RoleNetHostnameMap', 'RoleNetIpMap', 'ServerIdData')
# An input file larger than this is refused before it is parsed: stack
# outputs of a 500-node overcloud are a few MiB.
MAX_BYTES = 32 * 1024 * 1024
# A YAML document may share nodes (anchors and aliases); refused when
# expanding them would give more nodes than this (an alias bomb).
MAX_NODES = 2000000


def read_file(path, what, limit=MAX_BYTES):
    """The bytes of a regular file, at most ``limit`` of them.

    A FIFO, a device or a directory is refused before anything is read
    (opening does not block: O_NONBLOCK), as is a file over the limit.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise Error('%s %s: %s' % (what, path, exc.strerror))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Error('%s %s: not a regular file' % (what, path))
    with os.fdopen(fd, 'rb') as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Error('%s %s: larger than %d MiB' % (what, path,
                                                   limit // 1024 // 1024))
    return data


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in a mapping."""


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            twice = key in seen
            seen.add(key)
        except TypeError:       # unhashable: construct_mapping says so
            continue
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, 'the key %r is given twice' % (key,),
                key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                        _construct_mapping)


def _expanded(node, memo):
    """How many nodes ``node`` stands for once every alias is expanded."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1          # a node inside itself counts once
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded(k, memo) + _expanded(v, memo)
                     for k, v in node.value)
    memo[id(node)] = total
    return total


def load_yaml(path, what):
    """A JSON or YAML file (JSON is YAML), checked before it is built.

    Refused, with one line: what ``read_file`` refuses, text that is not
    UTF-8, a document that is not JSON or YAML (the line is named), a key
    given twice in a mapping, a document whose aliases expand past
    ``MAX_NODES``, and nesting deeper than Python can follow.
    """
    data = read_file(path, what)
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise Error('%s %s: not UTF-8 text' % (what, path))
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded(node, {}) > MAX_NODES:
            raise Error('%s %s: its aliases expand to more than %d nodes'
                        % (what, path, MAX_NODES))
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = ' at line %d' % (mark.line + 1) if mark else ''
        problem = getattr(exc, 'problem', '') or ''
        why = ': %s' % problem if 'twice' in problem else ''
        raise Error('%s %s: not valid JSON or YAML%s%s'
                    % (what, path, where, why))
    except RecursionError:
        raise Error('%s %s: nested too deeply' % (what, path))
    finally:
        loader.dispose()


# -- stack outputs --------------------------------------------------

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
    data = load_yaml(path, 'stack outputs')
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
    # a role scaled to zero (count 0) has no hosts: tripleo-common would
    # stop on it ("No IPs found for ... role"), so it is left out
    empty = {role for role, nets in outputs['RoleNetHostnameMap'].items()
             if not (nets or {}).get(HOST_NETWORK)}
    for key in ('RoleNetHostnameMap', 'RoleNetIpMap'):
        outputs[key] = {role: value for role, value in outputs[key].items()
                        if role not in empty}
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
    except Exception as exc:    # tripleo-common raises plain Exception too
        raise Error('stack outputs: tripleo-common cannot build an '
                    'inventory from them (%s: %s)'
                    % (type(exc).__name__, str(exc).splitlines()[0]
                       if str(exc) else ''))
    # ansible-core >= 2.19 wants a list of hosts, not a mapping
    excluded = data.get('excluded_overcloud', {})
    excluded['hosts'] = sorted(excluded.get('hosts') or [])
    return json.loads(json.dumps(data))


def load_inventory(path):
    """A saved tripleo-common inventory (static YAML or dynamic JSON)."""
    data = load_yaml(path, 'inventory')
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


def load_mapping(path, what):
    """A JSON or YAML file holding one mapping (net_cidr_map, VipMap)."""
    if not path:
        return None
    data = load_yaml(path, what)
    if not isinstance(data, dict):
        raise Error('%s %s: expected a mapping' % (what, path))
    return data


def vip_map(outputs):
    """THT's VipMap output (config-download's net_vip_map), if any."""
    value = outputs.get('VipMap') or {}
    if not isinstance(value, dict):
        raise Error('stack outputs: VipMap must be a mapping')
    return value


def topology_of(outputs, net_cidr_map=None, vip_networks=None,
                plan='overcloud', vips=None, net_mtu_map=None):
    """Stack outputs -> Topology, through tripleo-common's inventory.

    ``vips`` (an operator's net_vip_map) replaces the outputs' VipMap.
    """
    return topology.build(inventory(outputs, plan),
                          vip_map(outputs) if vips is None else vips,
                          net_cidr_map, vip_networks, net_mtu_map)
