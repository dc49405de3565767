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
module: tripleo_ipsec_render
short_description: Plan and render every node's IPsec bundle (undercloud)
description:
  - Runs on the undercloud, where the tripleo-ipsec package is installed.
    Builds the topology from config-download's inventory, plans, and
    renders one bundle per node into I(out), atomically.  The master key
    is I(master_key) when given, otherwise the file I(master_key_file),
    created once (0600) and kept across reruns.  Unchanged when the
    rendered bundles are what I(out) already holds.
options:
  inventory: {description: tripleo-common's inventory file., type: path,
              required: true}
  net_vip_map: {description: VIP name -> address (THT VipMap)., type: dict,
                default: {}}
  net_cidr_map: {description: network -> CIDRs., type: dict, default: {}}
  net_mtu_map: {description: "network -> link MTU, over the inventory's
                <network>_mtu.", type: dict, default: {}}
  vip_networks: {description: service VIP -> network., type: dict,
                 default: {}}
  # and every option of tripleo-ipsec (skip_networks, ike, esp, ...) under
  # its own name, as tripleo_ipsec.options declares them (README, Options)
  master_key: {description: an operator-given master key (base64)., type: str}
  master_key_file: {description: where the master key is kept., type: path,
                    required: true}
  out: {description: the bundles' directory., type: path, required: true}
'''

import base64  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _digest(root):
    if not os.path.isdir(root):
        return None
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            digest.update(b'%o' % os.stat(path).st_mode)
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def _spec(options):
    spec = dict(
        inventory=dict(type='path', required=True),
        net_vip_map=dict(type='dict', default={}),
        net_cidr_map=dict(type='dict', default={}),
        net_mtu_map=dict(type='dict', default={}),
        master_key=dict(type='str', no_log=True),
        master_key_file=dict(type='path', required=True, no_log=False),
        out=dict(type='path', required=True),
    )
    for name, entry in options.argument_spec().items():
        spec[name] = {k: v for k, v in entry.items() if k != 'description'}
    return spec


def main():
    from tripleo_ipsec import options
    module = AnsibleModule(argument_spec=_spec(options),
                           supports_check_mode=True)
    from tripleo_ipsec.errors import Error
    from tripleo_ipsec import keys
    from tripleo_ipsec import plan
    from tripleo_ipsec import render
    from tripleo_ipsec import sources
    from tripleo_ipsec import topology

    p = module.params
    try:
        values = {name: p[name] for name in options.argument_spec()}
        # THT's ServiceNetMap may map a VIP to nothing: not a placement
        values['vip_networks'] = {k: v for k, v in
                                  values['vip_networks'].items() if v}
        opts = options.load((), **values)
        topo = topology.build(
            sources.load_inventory(p['inventory']), p['net_vip_map'],
            p['net_cidr_map'], dict(opts.vip_networks), p['net_mtu_map'])
        the_plan = plan.build(topo, opts)
        if p['master_key']:
            try:
                secret = base64.b64decode(p['master_key'].strip(),
                                          validate=True)
            except ValueError:
                raise Error('the operator-given master key is not base64')
            master = keys.MasterKey(secret)
        elif module.check_mode and not os.path.exists(p['master_key_file']):
            module.exit_json(changed=True, msg='would create the master key '
                             'and render every bundle')
        else:
            master = keys.load_or_create(p['master_key_file'])
        before = _digest(p['out'])
        if module.check_mode:
            module.exit_json(changed=before is None,
                             hosts=len(the_plan.hosts))
        written = render.write(the_plan, master, p['out'])
    except (Error, OSError) as exc:
        module.fail_json(msg=str(exc))
    summary = the_plan.to_dict()['summary']
    for line in summary['over_budget']:
        module.warn(line)
    module.exit_json(changed=_digest(p['out']) != before,
                     hosts=sorted(written), networks=list(the_plan.networks),
                     conns=summary['conns'],
                     max_conns_per_host=summary['max_conns_per_host'],
                     max_sas_per_host=summary['max_sas_per_host'],
                     mtu=the_plan.mtu)


if __name__ == '__main__':
    main()
