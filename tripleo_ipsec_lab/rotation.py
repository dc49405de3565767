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

"""Key rotation on the wire, under continuous traffic (``traffic.py``).

- ``baseline``: what bumping ``IpsecKeyEpoch`` did before this project
  stopped replacing conns for a key change: on every node at once, the new
  secrets written, every conn of ours deleted, the secrets reread, every
  conn added again and the initiators initiating (the apply module's old
  replace path, step for step), without the kernel safety net, which did
  not exist then (put back afterwards).
- ``psk``: ``IpsecKeyEpoch`` bumped through the real deploy (Heat resolves
  the new value, config-download's steps run the role): new keys staged on
  every node, then reread on every node in one task.  Inside the window,
  every initiator rekeys its IKE SA (``whack --rekey-ike``): rekeys go on.

After the window, every initiator starts a fresh IKE_AUTH on each of its
conns (``whack --initiate``), which only the new credentials can pass:
every pair comes up again with a new IKE SA, and pluto's log says how the
peer authenticated.  A node whose pluto still had the old key would fail
that IKE_AUTH ("computed hash does not match" / AUTHENTICATION_FAILED).
"""

import dataclasses
import os
import re
import shlex
import time

from tripleo_ipsec import keys
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import plan
from tripleo_ipsec import render
from tripleo_ipsec_lab import certs
from tripleo_ipsec_lab import failover as failover_mod
from tripleo_ipsec_lab import overcloud
from tripleo_ipsec_lab import traffic as traffic_mod

WHACK = os.path.join(overcloud.LIBEXEC, 'whack')
CLOUD_DOMAIN = 'lab.example.com'
# "authenticated peer using authby=secret and ID_IPV4_ADDR '...'" (PSK),
# "authenticated peer '2048-bit RSASSA-PSS ...' digital signature using
# peer certificate '@...'" (certificate)
AUTHENTICATED = re.compile(r'"([^"]+)" #(\d+): (?:initiator|responder) '
                           r'established IKE SA; authenticated peer '
                           r'(?:using )?(.*)$', re.M)
RELOADED = re.compile(r": reloaded leftcert='([^']+)'")
IKE_SA = re.compile(r'^(?:000 )?#(\d+): "([^"]+)"\S* '
                    r'(?:STATE_V2_)?ESTABLISHED_IKE_SA', re.M)


class Rotation(object):

    def __init__(self, lab):
        self.lab, self.oc = lab, lab.oc

    # -- VIPs up for the window -------------------------------------------
    def vips(self, action):
        """Start (or stop) every VIP on its first holder.

        As pacemaker would: the address, then its IPsec resource (stop:
        the other way round).
        """
        for vip in self.oc.plan.vips:
            f = failover_mod.Failover(self.lab, vip_name=vip.name, moves=0)
            holder = f.holders[0]
            steps = [(f.ip_res, 'start', holder), (f.ours, 'start', holder)]
            if action == 'stop':
                steps = [(f.ours, 'stop', holder), (f.ip_res, 'stop', holder)]
            f.perform('ours', steps)

    # -- the window -------------------------------------------------------
    def vip_peers(self):
        """{node: its routed conns to VIPs}.

        A VIP's holder has its own conn to that VIP unrouted (the OCF
        agent's doing), and no SA on it.
        """
        found = {}
        for node in self.oc.nodes:
            status = libreswan.parse_status(
                self.oc.whack(node, '--status').stdout)
            found[node] = {c.name for c in self.oc.plan.hosts[node].conns
                           if c.kind == plan.VIP_PEER and c.name in status
                           and status[c.name].routing != 'unrouted'}
        return found

    def all_up(self, limit=120):
        """Wait until every pair has its Child SA (initiating the missing).

        Every pair of nodes, and every node with each VIP it does not
        hold.  A window measures one change: it starts with every pair up,
        not with what an earlier one left broken (the old epoch bump leaves
        the VIPs' SAs to come up on demand).  Returns what was missing.
        """
        vips = self.vip_peers()
        wanted = {n: set(c) | vips[n]
                  for n, c in self.initiators().items()}
        deadline = time.monotonic() + limit * self.lab.scale
        first = None
        while True:
            sas = self.lab.all_sas()
            missing = {n: [c for c in sorted(self.lab.expected(n) | vips[n])
                           if c not in sas[n]]
                       for n in self.oc.nodes}
            missing = {n: m for n, m in missing.items() if m}
            if first is None:
                first = missing
            if not missing or time.monotonic() > deadline:
                break
            for node, conns in missing.items():
                for conn in conns:
                    if conn in wanted[node]:
                        self.oc.whack(node, '--name', conn, '--initiate',
                                      '--asynchronous')
            time.sleep(2)
        if missing:
            raise RuntimeError('pairs still down before the window: %s'
                               % missing)
        return first

    def window(self, tag, change):
        """CHANGE() under traffic; the figures, with SA serials around it."""
        down_before = self.all_up()
        before = self.lab.all_sas()
        load = traffic_mod.Traffic(self.lab, tag)
        load.start()
        try:
            detail = change()
        finally:
            figures = load.stop()
        figures['down_before'] = down_before
        figures['sas_before'] = before
        figures['sas_after'] = self.lab.all_sas()
        figures['detail'] = detail
        return figures

    def initiators(self):
        """{node: [the host-to-host conns it initiates]}."""
        return {n: [c.name for c in self.oc.plan.hosts[n].conns
                    if c.kind == plan.HOST and c.initiator]
                for n in self.oc.nodes}

    def on_every_node(self, script_of):
        """Run SCRIPT_OF(node) in every node, side by side; check rc."""
        def one(node):
            return self.lab.guest.run(['sh', '-ec', script_of(node)],
                                      netns=node, timeout=300).stdout
        return self.oc.parallel(one, sorted(self.oc.nodes))

    def rekey_ike(self):
        """Every initiator rekeys each IKE SA (CREATE_CHILD_SA)."""
        wanted = self.initiators()
        self.on_every_node(lambda n: ' '.join(
            '%s --ctlsocket %s --name %s --rekey-ike --asynchronous;'
            % (WHACK, self.oc.nodes[n]['ctlsocket'], c)
            for c in wanted[n]) or 'true')

    def fresh_ike_auth(self):
        """A new IKE_AUTH on every pair; {conn: how the peer proved itself}.

        An IKE rekey never authenticates again, and ``--initiate`` on a
        live conn only adds a Child SA to its IKE SA: each initiator
        deletes each conn's IKE SA (``--deletestate``), then initiates the
        conn and waits for it.  Read back from the initiators' logs.  This
        costs the pair its SA for a moment: it runs after the window.
        """
        wanted = self.initiators()
        sizes = self.log_sizes()
        # the window's IKE rekeys end first: the newest IKE SA is the one
        # to delete, or a rekeyed one would carry the new Child SA
        time.sleep(5)

        def one(node):
            ctl = self.oc.nodes[node]['ctlsocket']
            # every IKE SA of the conn: two ends that initiated at once
            # keep both, and --initiate would reuse the one left
            ike_sas = IKE_SA.findall(self.lab.guest.run(
                [WHACK, '--ctlsocket', ctl, '--showstates'],
                netns=node).stdout)
            lines = []
            for conn in wanted[node]:
                for serial in sorted(int(n) for n, c in ike_sas
                                     if c == conn):
                    lines.append('%s --ctlsocket %s --deletestate %d' % (
                        WHACK, ctl, serial))
                lines.append('%s --ctlsocket %s --name %s --initiate'
                             % (WHACK, ctl, conn))
            # each whack's own output goes to the phase's log, rc checked
            return self.lab.guest.run(['sh', '-ec', '\n'.join(lines) or
                                       'true'], netns=node,
                                      timeout=600).stdout
        out = self.oc.parallel(one, sorted(self.oc.nodes))
        with open(os.path.join(self.lab.work, 'fresh-ike-auth.log'),
                  'a') as f:
            for node, text in sorted(out.items()):
                f.write('@@ %s\n%s' % (node, text))
        self.lab.guest.run(['sync'])
        found = {}
        for node in self.oc.nodes:
            text = self.log_since(node, sizes)
            for conn, serial, how in AUTHENTICATED.findall(text):
                if conn in wanted[node]:
                    found[conn] = how.strip()
        return {'pairs': sum(len(c) for c in wanted.values()),
                'authenticated': found,
                'missing': sorted(c for cs in wanted.values() for c in cs
                                  if c not in found)}

    # -- the changes ------------------------------------------------------
    def baseline(self, epoch):
        """The old epoch bump: replace every conn, on every node at once."""
        the_plan = plan.build(self.oc.topology, dataclasses.replace(
            self.oc.opts, key_epoch=epoch))
        out = os.path.join(self.lab.work, 'baseline-bundles')
        master = keys.load(os.path.join(self.lab.work, 'tripleo-ipsec',
                                        'master.key'))
        render.write(the_plan, master, out)
        loaded = self.lab.all_sas()

        def script(node):
            ctl = self.oc.nodes[node]['ctlsocket']
            etc = os.path.join(out, node, names.IPSEC_D)
            mine = the_plan.hosts[node].conns
            holders = [c.name for c in mine if c.kind == plan.VIP_HOLDER
                       and c.name in loaded[node]]
            replace = [c.name for c in mine if c.kind != plan.VIP_HOLDER]
            replace += holders
            # the product had no safety net then: without it, as it was;
            # put back at the end, under the reloaded conns
            net = [' '.join(['ip'] + libreswan.net_policy('add', a, b, d))
                   for c in mine if c.kind != plan.VIP_HOLDER
                   for a, b, d in ((c.left, c.right, 'out'),
                                   (c.right, c.left, 'in'))]
            lines = ['ip xfrm policy deleteall priority %d action block'
                     % names.NET_PRIORITY]
            lines.append('cp -p %s/*.secrets %s/*.conf /etc/ipsec.d/'
                         % (etc, etc))
            lines += ['%s --ctlsocket %s --delete --name %s' % (WHACK, ctl, c)
                      for c in replace]
            lines.append('%s --ctlsocket %s --rereadsecrets' % (WHACK, ctl))
            # as the apply module added them: --autoall routes the
            # auto=ondemand ones (their traps); holders are added by name
            lines.append('ipsec addconn --ctlsocket %s --config '
                         '/etc/ipsec.conf --autoall' % ctl)
            if holders:
                lines.append('ipsec addconn --ctlsocket %s --config '
                             '/etc/ipsec.conf %s' % (ctl, ' '.join(
                                 shlex.quote(c) for c in holders)))
            lines += ['%s --ctlsocket %s --name %s --initiate --asynchronous'
                      % (WHACK, ctl, c.name) for c in mine
                      if c.kind == plan.HOST and c.initiator]
            lines.append('cp -p %s/%s /etc/ipsec.d/' % (
                etc, os.path.basename(names.MANIFEST)))
            lines += net
            return '\n'.join(lines)
        self.on_every_node(script)
        return {'procedure': 'delete, reread, add, initiate every conn'}

    def control(self):
        """The same deploy with nothing to change: the guest's own noise.

        Whatever this loses, the guest lost (its one CPU starting every
        node's Ansible modules under the probes), not a key change.
        """
        stats, data = self.lab.deploy('rotate-control')
        return {'changed': {h: s['changed'] for h, s in stats.items()}}

    def psk(self, epoch):
        """IpsecKeyEpoch through the real deploy, then IKE rekeys."""
        self.oc.configure(IpsecKeyEpoch=epoch)
        stats, data = self.lab.deploy('rotate-psk')
        results = overcloud.by_task(data)
        applied = results.get("Reconcile this node's IPsec conns", {})
        reread = results.get('Reread the new keys on every node at once', {})
        self.rekey_ike()
        # the role runs at steps 1 and 3: what any of its runs did
        return {'replaced': {h: sorted({c for one in r
                                        for c in one.get('replaced', [])})
                             for h, r in applied.items()},
                'staged': sorted(h for h, r in applied.items()
                                 if any(one.get('staged') for one in r)),
                'reread_on': sorted(h for h, r in reread.items()
                                    if any(one.get('changed') for one in r))}

    # -- auth cert --------------------------------------------------------
    def stage_certs(self):
        """The certificates staged while on psk (the CA, IpsecAuth psk).

        Every node has its certificates issued and tracked; no conn is
        touched.
        """
        ca = self.oc.ca
        self.oc.configure(IpsecCertCa=ca.name, IpsecCertTrust=[ca.ca_pem],
                          CloudDomain=CLOUD_DOMAIN)
        return self.cert_deploy('stage-certs')

    def to_cert(self):
        """psk -> cert through the real deploy (IpsecAuth, CA staged)."""
        self.oc.configure(IpsecAuth='cert')
        return self.cert_deploy('to-cert')

    def cert_deploy(self, tag):
        stats, data = self.lab.deploy(tag)
        results = overcloud.by_task(data)
        applied = results.get("Reconcile this node's IPsec conns", {})
        issued = results.get("Have certmonger issue and track this node's "
                             "IPsec certificates", {})
        return {'replaced': {h: sorted({c for one in r
                                        for c in one.get('replaced', [])})
                             for h, r in applied.items()},
                'requested': {h: sorted({c for one in r
                                         for c in one.get('requested', [])})
                              for h, r in issued.items()}}

    def held_certs(self):
        """{node: {nickname: cert}}: what every pluto holds."""
        def one(node):
            out = self.lab.guest.run(
                [WHACK, '--ctlsocket', self.oc.nodes[node]['ctlsocket'],
                 '--listcerts'], netns=node).stdout
            return libreswan.parse_certs(out)
        return self.oc.parallel(one, sorted(self.oc.nodes))

    def renew(self, limit=600):
        """certmonger renews every certificate of every node (resubmit).

        Its post-save command makes pluto reread them; nothing else runs.
        The resubmits are queued one after another (``getcert resubmit``
        returns once certmonger has the request; eight ``-w`` waits side by
        side outlived certmonger's D-Bus replies in the one-CPU guest), and
        pluto's own list of certificates says when every one is renewed.
        Then every initiator rekeys its IKE SA.
        """
        before = self.held_certs()
        sizes = self.log_sizes()

        def script(node):
            env = ' '.join('%s=%s' % kv for kv in
                           certs.node_env(node).items())
            return '\n'.join(
                'env %s getcert resubmit -d sql:/etc/ipsec.d -n %s'
                % (env, nick) for nick in sorted(before[node]))
        self.on_every_node(script)
        deadline = time.monotonic() + limit * self.lab.scale
        while True:
            after = self.held_certs()
            stale = {n: [k for k in before[n] if after[n].get(k, {}).get(
                'serial') == before[n][k]['serial']] for n in before}
            if not any(stale.values()) or time.monotonic() > deadline:
                break
            time.sleep(5)
        self.rekey_ike()
        # what certmonger says of any it did not renew (its ca-error)
        stuck = {}
        for node, nicks in sorted(stale.items()):
            for nick in nicks:
                stuck['%s/%s' % (node, nick)] = certs.getcert(
                    self.lab.guest, node, 'list', '-d', 'sql:/etc/ipsec.d',
                    '-n', nick, check=False).stdout[-800:]
        return {'renewed': {n: sorted(k for k in before[n]
                                      if after[n].get(k, {}).get('serial')
                                      != before[n][k]['serial'])
                            for n in before},
                'held_after': after, 'not_renewed': stuck,
                'not_reloaded': self.conns_reloaded(sizes)}

    def conns_reloaded(self, sizes):
        """{node: [certificates in use it has not reloaded]} since SIZES.

        ``--listcerts`` shows the NSS database; what a conn signs with is
        pluto's own copy, which only ``--rereadcerts`` (certmonger's
        post-save) replaces, logging "reloaded leftcert=".  Every
        certificate a loaded conn of the node uses must have been
        reloaded.  (Peers keep no list of the certificates they were shown:
        pluto 4.10's ``--listpubkeys`` holds only a node's own keys.)
        """
        stale = {}
        for node in sorted(self.oc.nodes):
            in_use = {c.cert for c in libreswan.parse_status(
                self.oc.whack(node, '--status').stdout).values() if c.cert}
            reloaded = set(RELOADED.findall(self.log_since(node, sizes)))
            if in_use - reloaded:
                stale[node] = sorted(in_use - reloaded)
        return stale

    def log(self, node):
        return os.path.join(self.lab.work, 'logs', 'pluto-%s.log' % node)

    def log_sizes(self):
        """{node: the size of its pluto log}, to read what comes after."""
        return {n: os.path.getsize(self.log(n)) for n in self.oc.nodes}

    def log_since(self, node, sizes):
        """What NODE's pluto logged since SIZES (log_sizes)."""
        with open(self.log(node)) as f:
            f.seek(sizes[node])
            return f.read()
