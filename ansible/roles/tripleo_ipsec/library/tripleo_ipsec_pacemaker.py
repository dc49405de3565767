#!/usr/bin/python
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

DOCUMENTATION = r'''
module: tripleo_ipsec_pacemaker
short_description: Give each VIP its IPsec resource in pacemaker
description:
  - On one cluster node, runs the pcs commands C(tripleo-ipsec render)
    wrote (pacemaker.json) whose resource or constraint the CIB lacks, so
    it is idempotent.  With I(state=absent), deletes the resources (pcs
    removes their constraints with them).
options:
  commands:
    description: The commands, [{kind, key, argv}].
    type: list
    elements: dict
    required: true
  state:
    description: present or absent.
    type: str
    choices: [present, absent]
    default: present
  cib_file:
    description: Work on this CIB file (pcs -f) instead of the live cluster.
    type: path
  timeout:
    description: Seconds any one pcs command may take.
    type: int
    default: 120
'''

import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.tripleo_ipsec_pacemaker import missing  # noqa
from ansible.module_utils.tripleo_ipsec_pacemaker import resources  # noqa
from ansible.module_utils.tripleo_ipsec_pacemaker import with_cib_file  # noqa


def _run(module, argv):
    try:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=module.params['timeout'])
    except subprocess.TimeoutExpired:
        module.fail_json(msg='%s timed out' % ' '.join(argv[:4]))
    if result.returncode:
        module.fail_json(msg='%s: %s' % (' '.join(argv[:5]),
                                         result.stderr.strip()))
    return result.stdout


def _cib(module):
    if module.params['cib_file']:
        with open(module.params['cib_file']) as f:
            return f.read()
    return _run(module, ['pcs', 'cluster', 'cib'])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            commands=dict(type='list', elements='dict', required=True),
            state=dict(type='str', default='present',
                       choices=['present', 'absent']),
            cib_file=dict(type='path'),
            timeout=dict(type='int', default=120),
        ),
        supports_check_mode=True,
    )
    p = module.params
    cib = _cib(module)
    if p['state'] == 'present':
        todo = missing(p['commands'], cib, p['cib_file'])
    else:
        present = [r for r in resources(p['commands'])
                   if 'id="%s"' % r in cib]
        todo = [with_cib_file(['pcs', 'resource', 'delete', r],
                              p['cib_file']) for r in present]
    if not module.check_mode:
        for argv in todo:
            _run(module, argv)
    module.exit_json(changed=bool(todo), ran=[' '.join(a) for a in todo])


if __name__ == '__main__':
    main()
