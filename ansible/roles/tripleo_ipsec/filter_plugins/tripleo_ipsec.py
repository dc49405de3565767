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

    Reads the variables tripleo-common's inventory gives each node
    (``tripleo_role_networks``, ``<network>_ip``) with the topology's own
    rule (a noop port's ctlplane address is no address on the network).
    Runs on the Ansible host, where tripleo-ipsec is installed.  Returns
    [{network, address}], sorted.
    """
    from tripleo_ipsec import topology

    def addresses(host):
        hvars = hostvars[host]
        return topology.host_addresses(
            hvars, hvars.get('tripleo_role_networks') or ())

    mine = addresses(me)
    targets = []
    for peer in hosts:
        if peer == me:
            continue
        for net, address in addresses(peer).items():
            if net in mine:
                targets.append({'network': net, 'address': address})
    return sorted(targets, key=lambda t: (t['network'], t['address']))


class FilterModule(object):

    def filters(self):
        return {'tripleo_ipsec_probe_targets': probe_targets}
