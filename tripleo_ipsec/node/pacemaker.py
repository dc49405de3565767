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

"""Plan -> the pcs commands that give each VIP its IPsec resource.

For every VIP on a protected network: one ``ocf:tripleo-ipsec:vip``
resource, colocated with the VIP's IPaddr2 resource (THT's ``ip-<address>``)
and ordered after it, so it starts where the VIP lands, after the address
is up, and stops before the address leaves.  ``missing`` compares with a
CIB, so creating is idempotent.

The standard library only: the Ansible role ships this module to the
controllers as module_utils, where it runs the commands with pcs.
"""

import xml.etree.ElementTree as ET

MONITOR = ['op', 'monitor', 'interval=10s', 'timeout=30s']
START_STOP = ['op', 'start', 'timeout=60s', 'op', 'stop', 'timeout=60s']


def commands(vips):
    """Every pcs command for these VIPs (``Plan.vips`` or their dicts).

    Returns [{kind, key, argv}], in the order they must run; argv starts
    with 'pcs'.
    """
    result = []
    for vip in vips:
        res = vip['resource'] if isinstance(vip, dict) else vip.resource
        params = ['%s=%s' % kv for kv in sorted(res['params'].items())]
        result.append({'kind': 'primitive', 'key': [res['id']],
                       'argv': ['pcs', 'resource', 'create', res['id'],
                                res['agent']] + params + MONITOR +
                       START_STOP})
        result.append({'kind': 'colocation',
                       'key': [res['id'], res['colocated_with']],
                       'argv': ['pcs', 'constraint', 'colocation', 'add',
                                res['id'], 'with', res['colocated_with'],
                                'INFINITY']})
        result.append({'kind': 'order',
                       'key': [res['started_after'], res['id']],
                       'argv': ['pcs', 'constraint', 'order', 'start',
                                res['started_after'], 'then', 'start',
                                res['id']]})
    return result


def _present(cib_xml):
    root = ET.fromstring(cib_xml)
    return {
        'primitive': {(p.get('id'),) for p in root.iter('primitive')},
        'colocation': {(c.get('rsc'), c.get('with-rsc'))
                       for c in root.iter('rsc_colocation')},
        'order': {(o.get('first'), o.get('then'))
                  for o in root.iter('rsc_order')},
    }


def with_cib_file(argv, cib_file):
    """pcs ARGS -> pcs -f CIB_FILE ARGS (offline, on a CIB file)."""
    return argv[:1] + ['-f', cib_file] + argv[1:] if cib_file else argv


def missing(cmds, cib_xml, cib_file=None):
    """The argv of each command whose resource or constraint is missing."""
    present = _present(cib_xml)
    return [with_cib_file(c['argv'], cib_file) for c in cmds
            if tuple(c['key']) not in present[c['kind']]]


def resources(cmds):
    """The ids of the resources the commands create."""
    return [c['key'][0] for c in cmds if c['kind'] == 'primitive']
