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
module: tripleo_ipsec_probe
short_description: Prove a node's protected networks carry only ESP
description:
  - C(start) starts a capture on every interface and a TCP listener;
    C(send) sends ICMP and TCP carrying a marker to every target;
    C(stop) stops both and counts, per network, the packets to or from the
    targets that are not ESP, IKE, ARP or neighbour discovery, and the
    marker's appearances, leaving out what the manifest's exemptions
    (IpsecClearExemptions) let through in clear.  C(stop) fails when a
    protected network shows either, when an unprotected network with
    targets shows no marker (then the capture could not have seen
    cleartext either), and when
    there is no target at all (nothing was proven).
options:
  phase:
    description: Which step of the probe.
    type: str
    required: true
    choices: [start, send, stop]
  workdir:
    description: Where the capture and the probe's state are kept.
    type: path
    default: /var/lib/tripleo-ipsec/probe
  targets:
    description: The peers, as C({network, address}).
    type: list
    elements: dict
    default: []
  protected:
    description:
      - The networks that must carry only ESP.  Default, the networks the
        installed manifest protects.
    type: list
    elements: str
  manifest:
    description: The installed manifest (default where the role installs
      it, as the module_utils tripleo_ipsec_names says).
    type: path
  port:
    description: The probe's TCP port.
    type: int
    default: 7655
  lifetime:
    description: Seconds the capture and listener live at most.
    type: int
    default: 900
'''

import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils import tripleo_ipsec_names as names  # noqa
from ansible.module_utils import tripleo_ipsec_wire as wire  # noqa: E402


def _daemon(target, *args):
    """Run TARGET(*ARGS) in a detached child; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        target(*args)
    finally:
        os._exit(0)


def start(module, p):
    os.makedirs(p['workdir'], exist_ok=True)
    stop_all(p)
    pcap = os.path.join(p['workdir'], 'probe.pcap')
    tcpdump = wire.capture(pcap)
    listener = _daemon(wire.listen, p['port'], p['lifetime'])
    with open(os.path.join(p['workdir'], 'pids.json'), 'w') as f:
        json.dump({'capture': tcpdump.pid, 'listener': listener}, f)
    module.exit_json(changed=True, pcap=pcap)


def stop_all(p):
    path = os.path.join(p['workdir'], 'pids.json')
    if not os.path.exists(path):
        return
    with open(path) as f:
        pids = json.load(f)
    for pid in pids.values():
        wire.stop(pid)
    os.unlink(path)


def send(module, p):
    sent = wire.send([t['address'] for t in p['targets']], p['port'])
    with open(os.path.join(p['workdir'], 'sent.json'), 'w') as f:
        json.dump(sent, f)
    module.exit_json(changed=False, sent=sent)


def finish(module, p):
    stop_all(p)
    pcap = os.path.join(p['workdir'], 'probe.pcap')
    with open(os.path.join(p['workdir'], 'sent.json')) as f:
        sent = json.load(f)
    manifest = {}
    if p['protected'] is None or os.path.exists(p['manifest']):
        with open(p['manifest']) as f:
            manifest = json.load(f)
    protected = p['protected']
    if protected is None:
        protected = manifest.get('networks', [])
    # what IpsecClearExemptions leaves in clear, per network
    exempt = {net: sorted(set(conns.values()))
              for net, conns in manifest.get('clear', {}).items()}
    if not p['targets']:
        # nothing sent, nothing proven: an inventory without tripleo-common's
        # tripleo_role_networks and <network>_ip variables gets here
        module.fail_json(msg='no peers to probe: the inventory gives no '
                         'tripleo_role_networks/<network>_ip for them')
    by_net = {}
    for t in p['targets']:
        by_net.setdefault(t['network'], []).append(t['address'])
    networks, bad = wire.by_peer(pcap, by_net, exempt=exempt), []
    for net, addresses in sorted(by_net.items()):
        result = networks[net]
        result['protected'] = net in protected
        result['targets'] = len(addresses)
        result['reached'] = len([a for a in addresses
                                 if sent.get(a, {}).get('icmp')])
        if result['protected'] and (result['cleartext'] or result['marker']):
            bad.append('%s: %d cleartext packets, %d marker hits'
                       % (net, result['cleartext'], result['marker']))
        if not result['protected'] and not result['marker']:
            bad.append('%s: the capture saw no cleartext marker on an '
                       'unprotected network' % net)
    if bad:
        module.fail_json(msg='; '.join(bad), networks=networks, pcap=pcap)
    module.exit_json(changed=False, networks=networks, pcap=pcap)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type='str', required=True,
                       choices=['start', 'send', 'stop']),
            workdir=dict(type='path',
                         default='/var/lib/tripleo-ipsec/probe'),
            targets=dict(type='list', elements='dict', default=[]),
            protected=dict(type='list', elements='str'),
            manifest=dict(type='path', default='/' + names.MANIFEST),
            port=dict(type='int', default=7655),
            lifetime=dict(type='int', default=900),
        ),
    )
    p = module.params
    try:
        {'start': start, 'send': send, 'stop': finish}[p['phase']](module, p)
    except (wire.WireError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == '__main__':
    main()
