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
module: tripleo_ipsec_certs
short_description: A node's IPsec certificates, from certmonger into NSS
description:
  - For auth cert.  Trusts exactly the CA certificates of the manifest's
    C(trust) files (imported into libreswan's NSS database), has
    certmonger request every certificate the manifest names from its CA
    (IPA, or one the deployment registered with C(getcert add-ca)) into
    that database and track it, with a post-save command that makes pluto
    reread its certificates (C(ipsec whack --rereadcerts)) after every
    renewal, so no conn is ever replaced for a new certificate.
  - Runs before the conns are loaded, which need their certificates.
    Certificates of ours the manifest no longer names are forgotten.
options:
  manifest:
    description: The node's bundle manifest (its C(certs) part is used).
    type: dict
    required: true
  nssdir:
    description: libreswan's NSS database (default what C(ipsec addconn
      --configsetup) says).
    type: path
  ctlsocket:
    description: pluto's control socket, for the post-save command.
    type: path
  timeout:
    description: Seconds any one command may take (a request waits for its
      CA).
    type: int
    default: 300
'''

import re  # noqa: E402
import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils import tripleo_ipsec_names as names  # noqa
from ansible.module_utils.tripleo_ipsec_certmonger import Certs  # noqa
from ansible.module_utils.tripleo_ipsec_certmonger import CertError  # noqa
from ansible.module_utils.tripleo_ipsec_certmonger import reconcile  # noqa

_NSSDIR = re.compile(r"^(?:export )?nssdir='?([^'\n]+)'?$", re.M)


def nssdir(timeout):
    """libreswan's NSS database, as its own configuration says."""
    try:
        out = subprocess.run(['ipsec', 'addconn', '--configsetup'],
                             capture_output=True, text=True, check=True,
                             timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CertError('ipsec addconn --configsetup: %s' % exc)
    match = _NSSDIR.search(out)
    if not match:
        raise CertError('ipsec addconn --configsetup names no nssdir')
    return match.group(1)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            manifest=dict(type='dict', required=True),
            nssdir=dict(type='path'),
            ctlsocket=dict(type='path', default=names.CTLSOCKET),
            timeout=dict(type='int', default=300),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        certs = Certs(params['nssdir'] or nssdir(params['timeout']),
                      params['timeout'])
        result = reconcile(certs, params['manifest'], params['ctlsocket'],
                           module.check_mode)
    except CertError as exc:
        module.fail_json(msg='%s: %s' % (
            params['manifest'].get('host', 'this node'), exc))
    module.exit_json(changed=any(result.values()), nssdir=certs.nssdir,
                     **result)


if __name__ == '__main__':
    main()
