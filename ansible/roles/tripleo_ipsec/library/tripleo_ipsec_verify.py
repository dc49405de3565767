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
module: tripleo_ipsec_verify
short_description: Which of a node's expected conns have an IPsec SA
description:
  - Reads the installed tripleo-ipsec manifest and asks pluto which of the
    node's host-to-host conns (and, with I(vips), its conns towards VIPs)
    have an established IPsec (Child) SA.  Fails when any has none.
options:
  manifest:
    description: The installed manifest (default where the role installs
      it, as the module_utils tripleo_ipsec_names says).
    type: path
  ctlsocket:
    description: pluto's control socket (default pluto's own, as the
      module_utils tripleo_ipsec_names says).
    type: path
  vips:
    description: Also expect an SA on every conn towards a VIP.
    type: bool
    default: false
  timeout:
    description: Seconds any one libreswan command may take.
    type: int
    default: 120
'''

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils import tripleo_ipsec_names as names  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import LibreswanError  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import missing_message  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import verify_node  # noqa


def main():
    module = AnsibleModule(
        argument_spec=dict(
            manifest=dict(type='path', default='/' + names.MANIFEST),
            ctlsocket=dict(type='path', default=names.CTLSOCKET),
            vips=dict(type='bool', default=False),
            timeout=dict(type='int', default=120),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        report = verify_node(params['manifest'], params['ctlsocket'],
                             params['vips'], params['timeout'])
    except LibreswanError as exc:
        module.fail_json(msg=str(exc))
    if not report['ok']:
        module.fail_json(msg=missing_message(report), **report)
    module.exit_json(changed=False, **report)


if __name__ == '__main__':
    main()
