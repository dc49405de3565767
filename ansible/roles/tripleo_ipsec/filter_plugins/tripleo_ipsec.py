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
"""Filters of the tripleo_ipsec role."""


def probe_targets(hostvars, hosts, me):
    """Every peer's address on every network it shares with ME.

    Reads the variables tripleo-common's inventory gives each node:
    ``tripleo_role_networks`` and ``<network>_ip``.  Returns
    [{network, address}], sorted.
    """
    mine = set(hostvars[me].get('tripleo_role_networks') or ())
    targets = []
    for peer in hosts:
        if peer == me:
            continue
        peer_vars = hostvars[peer]
        for net in sorted(mine & set(peer_vars.get('tripleo_role_networks')
                                     or ())):
            address = peer_vars.get('%s_ip' % net)
            if address:
                targets.append({'network': net, 'address': address})
    return sorted(targets, key=lambda t: (t['network'], t['address']))


class FilterModule(object):

    def filters(self):
        return {'tripleo_ipsec_probe_targets': probe_targets}
