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

"""Plan + master key -> files, one tree per host, rooted as on the node.

``OUT/<host>/etc/ipsec.d/tripleo-<network>.conf`` and ``.secrets`` hold a
network's host-to-host conns and their keys; ``tripleo-vip-<vip>.conf`` and
``.secrets`` a VIP's conns; ``etc/ipsec.d/tripleo-ipsec.manifest.json`` lists
every conn with a digest, so the node side can reconcile conn by conn;
``OUT/pacemaker.json`` holds the pcs commands for the VIPs' resources.
Secrets files are 0600.  The whole output appears at once (rendered in a
temporary directory beside OUT, then renamed), or not at all.
"""

import base64
import gc
import hashlib
import json
import mmap
import multiprocessing
import os
import shutil
import signal
import tempfile
import uuid

import jinja2

from tripleo_ipsec.errors import Error
from tripleo_ipsec import keys as keys_mod
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec.node import pacemaker
from tripleo_ipsec import plan as plan_mod

MARKER = '.tripleo-ipsec-output'

_HELD = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
SHUNTS = {
    'private': {'failure': 'drop', 'negotiation': 'hold'},
    'private-or-clear': {'failure': 'passthrough',
                         'negotiation': 'passthrough'},
}

# Mode group, measured in the lab's guest (libreswan 4.10, two nodes, a
# ping every 100 ms, one node's pluto stopped 2 s then started again):
# - the ipsec service's restart with our drop-in (pluto leaves its state;
#   once the next one has routed its group conn the node's outbound SAs
#   go; both ends pinging): answered all the while pluto was down, and
#   steady both ways, once that removal had run, 4.2-5.8 s after the
#   start (six restarts); only the restarted pluto negotiates
#   (libreswan.service_dropin has why; tests/test_groups.py);
# - a restart with a Delete to the peers (``whack --shutdown`` by hand):
#   the peer's traffic came back 15.7-25.3 s after the start, held back by
#   the kernel's ACQUIRE state of the pair's last negotiation, which lives
#   net.core.xfrm_acq_expires seconds (30); 2.9 s with 3 s.  But the same
#   lifetime bounds an SPI pluto reserved (XFRM_MSG_ALLOCSPI) until its SA
#   goes in: at 3 s an IKE_AUTH retransmitted three times (0.5 + 1 + 2 s)
#   outlived it, the SA could not be added (ESRCH), and 4.10 then ignored
#   the pair's ACQUIREs for good (an instance with an IKE SA).  The deploy
#   sets it to 30, the kernel's default, which lets libreswan retransmit
#   until 15.5 s (an earlier tripleo-ipsec lowered it to 3);
# - a crash (no Delete, the kernel's SAs flushed as systemd's ExecStopPost
#   does): the peer's SA outlives its other end, never recovered in 90 s;
#   with IKEv2 liveness (dpddelay) the peer declares it dead after
#   libreswan's retransmit timeout (60 s) and negotiates again: 65.5 s
#   with dpddelay=2s.  10 s keeps the checks rare on idle pairs.
GROUP_DPDDELAY = '10s'
# Mode group, two nodes' first packets to each other at once (a deploy, a
# cluster forming): both initiate, and each answers the other's
# negotiation too.  libreswan 4.10 drops its own negotiation, unanswered
# at its first retransmit, as superseded once it has answered the peer's,
# and tells no one; the peer's Child SA for it, the newer, then carries
# the peer's traffic into nothing.  The lab's guest takes 1.1-1.7 s to
# install a responder's Child SA, over libreswan's 0.5 s: a controller
# pair lost one way for good in a lab run (liveness removed the
# dead IKE SA after 60 s and ``hold`` left an instance that ignores the
# kernel's ACQUIREs).  With the crossing made certain (tests/test_groups.py:
# each IKE_SA_INIT request 500 ms late, one end's IKE_AUTH answers 1.5 s)
# neither way answered; watched for 110 s, liveness came and the two
# renegotiations crossed again.  A first retransmit at 5 s lets both
# answers arrive: two good IKE SAs, both ways answered within seconds.  A
# lost IKE packet waits 5 s too; the retransmit timeout (60 s) is as it was.
GROUP_RETRANSMIT_MS = 5000
GROUP_ACQUIRE_EXPIRES = 30

KEY_CHARS = len(base64.b64encode(bytes(keys_mod.PSK_BYTES)))

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader('tripleo_ipsec', 'templates'),
    trim_blocks=True, keep_trailing_newline=True, autoescape=False,
    undefined=jinja2.StrictUndefined)


def _groups(host_plan):
    """A host's conns grouped by the file they go to, in file order.

    {(conf, secrets, shared section, title, vip): [Conn, ...]}
    """
    grouped = {}
    for conn in host_plan.conns:
        grouped.setdefault((conn.kind == plan_mod.HOST, conn.network,
                            conn.vip), []).append(conn)
    groups = {}
    for (is_host, network, vip), conns in grouped.items():
        if is_host:
            key = (names.network_conf(network),
                   names.network_secrets(network),
                   names.defaults_conn(network),
                   'host-to-host conns on network %s' % network, '')
        else:
            key = (names.vip_conf(vip), names.vip_secrets(vip),
                   names.defaults_conn('vip-' + vip),
                   'conns of VIP %s on network %s' % (vip, network), vip)
        groups[key] = conns
    return groups


class _Keys(object):
    """Each pair's key, derived once for both of its ends.

    Given the plan's members, every pair of hosts on a network has a place
    in one table of keys (``derive`` fills it, in shares the forked workers
    fill at once; it is memory they share, so a pair whose ends two
    workers render is derived once, not by each).  Any other pair (a VIP's,
    or every pair of a host rendered alone) is derived when asked for.
    """

    def __init__(self, master_key, epoch, members=None):
        self.master_key, self.epoch = master_key, epoch
        self.rows = {}      # (network, address) -> (block, position, size)
        self.blocks = []    # (network, addresses, block): one per family
        self.addresses = {}     # block -> its addresses
        self.columns = {}       # block -> [offset of row j, less j + 1]
        size = 0
        for network, hosts in sorted((members or {}).items()):
            for family in (False, True):
                addresses = [a for _, a in hosts if (':' in a) == family]
                n = len(addresses)
                if n < 2:
                    continue
                self.rows.update(((network, a), (size, i, n))
                                 for i, a in enumerate(addresses))
                self.blocks.append((network, addresses, size))
                self.addresses[size] = addresses
                # where row j's pair (j, i) is, less i (in characters)
                self.columns[size] = [
                    (size + j * n - j * (j + 1) // 2 - j - 1) * KEY_CHARS
                    for j in range(n)]
                size += n * (n - 1) // 2
        # anonymous and shared: what a forked worker writes, all see
        self.table = mmap.mmap(-1, size * KEY_CHARS) if size else None

    def __call__(self, conn):
        return self.pair(conn.network, conn.left, conn.right)

    def pair(self, network, left, right):
        a = self.rows.get((network, left))
        b = self.rows.get((network, right))
        if a is None or b is None or a[0] != b[0] or a[1] == b[1]:
            return self.master_key.psk(network, left, right, self.epoch)
        block, i, n = a
        j = b[1]
        if j < i:
            i, j = j, i
        # row i holds pairs (i, i+1) .. (i, n-1), after i*n - i(i+1)/2
        at = (block + i * n - i * (i + 1) // 2 + j - i - 1) * KEY_CHARS
        return self.table[at:at + KEY_CHARS].decode('ascii')

    def row(self, network, address):
        """[(peer, key)]: ADDRESS with every other member of its block.

        Its network's other hosts of its family, in member order; None
        when ADDRESS has no place in the table.  A group host's key lines
        (its pairs after it are one run of the table).
        """
        place = self.rows.get((network, address))
        if place is None:
            return None
        block, i, n = place
        table, size = self.table, KEY_CHARS
        # pairs (j, i), j < i: one in each earlier row, at its start
        # (columns) plus i; then pairs (i, j), j > i: one run
        at = i * size
        start = (block + i * n - i * (i + 1) // 2) * size
        text = (b''.join([table[s + at:s + at + size]
                          for s in self.columns[block][:i]]) +
                table[start:start + (n - 1 - i) * size]).decode('ascii')
        addresses = self.addresses[block]
        return list(zip(addresses[:i] + addresses[i + 1:],
                        [text[k:k + size] for k in range(0, len(text), size)]))

    def derive(self, part=0, parts=1):
        """Fill share PART of PARTS of the table (pairs PART/PARTS..)."""
        if self.table is None:
            return
        total = len(self.table) // KEY_CHARS
        low, high = total * part // parts, total * (part + 1) // parts
        psks, epoch = self.master_key.psks, self.epoch
        for network, addresses, block in self.blocks:
            n = len(addresses)
            for i in range(n - 1):
                start = block + i * n - i * (i + 1) // 2
                first, end = max(start, low), min(start + n - 1 - i, high)
                if first >= end:
                    continue
                # pair (i, j) is at start + j - i - 1
                self.table[first * KEY_CHARS:end * KEY_CHARS] = psks(
                    network, addresses[i],
                    addresses[first - start + i + 1:end - start + i + 1],
                    epoch)

    def close(self):
        if self.table is not None:
            self.table.close()


def _key_lines(keys):
    """One secrets line per (left, right, psk), joined.

    No template loop: a group's host has one line per peer.
    """
    return ''.join('%s %s : PSK "%s"\n' % key for key in keys)


def _digests(text, conns):
    """Each conn's digest in a rendered file, by name.

    Over what pluto loads for it: its stanza and the shared section it
    includes.
    """
    stanzas = text.split('\nconn ')
    return {c.name: hashlib.sha256(
        (stanzas[1] + stanza).encode()).hexdigest()[:16]
        for c, stanza in zip(conns, stanzas[2:])}


def host_files(the_plan, host, master_key, derive=None):
    """The files of one host: {relative path: (text, mode)}.

    The manifest lists every file with its mode, every conn with a digest
    of what pluto would load for it (its stanza and the shared section it
    includes), the conns this end initiates, each VIP's conns, the
    networks this host protects and, with failure policy private, each
    conn's pair for the kernel's safety net (names.NET_PRIORITY), and the
    exemptions' passthrough conns (``clear``: network -> {name:
    exemption}); the node
    side reconciles and verifies from it.  A key is not part of a conn's
    digest: a new key changes the secrets files only, which the node
    rereads without touching a live SA
    (keys rotate with no conn replaced).
    """
    opts = the_plan.options
    epoch = opts.key_epoch
    shunt = SHUNTS[opts.failure_policy]
    certs = opts.auth == 'cert'
    context = {'ike': opts.ike, 'esp': opts.esp,
               'authby': 'rsasig' if certs else 'secret',
               # 4.x syntax; a node with another libreswan rewrites it
               # for the one it finds there (Libreswan.adapt)
               'keyexchange': libreswan.syntax(4)['keyexchange'],
               'failureshunt': shunt['failure'],
               'negotiationshunt': shunt['negotiation'],
               # libreswan's defaults are left unsaid: a deployment that
               # keeps them keeps every conn's digest (no conn replaced)
               'encapsulation': opts.encapsulation,
               'compress': opts.compress,
               'group_dpddelay': GROUP_DPDDELAY,
               'group_retransmit_ms': GROUP_RETRANSMIT_MS}
    derive = derive or _Keys(master_key, epoch)
    conns_tpl = _ENV.get_template('conns.conf.j2')
    secrets_tpl = _ENV.get_template('secrets.j2')
    files, digests, initiate, vips, networks = {}, {}, [], {}, set()
    groups = {}         # network -> its group conn (mode group)
    net = {}            # conn -> [left, right]: the kernel's safety net
    wanted = {}         # certificate nickname -> what it must say
    addresses = {v.name: v.address for v in the_plan.vips}
    for (conf, secrets, defaults, title, vip), conns in _groups(
            the_plan.hosts[host]).items():
        # the plan's tuples as they are: Jinja reads a tuple's field
        # directly, a dict's only after a failed getattr (a million conns
        # at 500 nodes, bench/scale.py)
        text = conns_tpl.render(
            context, title=title, defaults=defaults, conns=conns, group=False,
            aliases={c.name: names.vip_holder_alias(c.vip) for c in conns
                     if c.kind == plan_mod.VIP_HOLDER})
        files[conf] = (text, 0o644)
        # the certificates: those the conns name, or, with a CA while
        # still on psk, the same ones staged for the switch to cert
        for c in conns if opts.cert_ca else ():
            c = c if certs else plan_mod.with_cert(c, host, opts.cert_domain)
            wanted[c.cert] = {'id': c.left_id, 'network': c.network,
                              'vip': c.vip if c.kind ==
                              plan_mod.VIP_HOLDER else ''}
        if not certs:
            # a network's host-to-host conns share their left: its row of
            # the key table, read at once (a VIP's pairs are not in it)
            row = {} if vip else dict(
                derive.row(conns[0].network, conns[0].left) or ())
            files[secrets] = (secrets_tpl.render(
                title=title, epoch=epoch, lines=_key_lines(
                    (c.left, c.right, row.get(c.right) or derive(c))
                    for c in conns)), 0o600)
        digests.update(_digests(text, conns))
        networks.update(c.network for c in conns)
        if opts.failure_policy == 'private':
            # a VIP holder's side is its OCF agent's, where the VIP is
            net.update((c.name, [c.left, c.right]) for c in conns
                       if c.kind != plan_mod.VIP_HOLDER)
        initiate.extend(c.name for c in conns
                        if c.initiator and c.kind == plan_mod.HOST)
        if vip:
            vips[vip] = {
                'network': conns[0].network, 'file': '/' + conf,
                'address': addresses[vip],
                'alias': names.vip_holder_alias(vip),
                'peer': [c.name for c in conns
                         if c.kind == plan_mod.VIP_PEER],
                'holder': [c.name for c in conns
                           if c.kind == plan_mod.VIP_HOLDER]}
    members = the_plan.members
    for group in the_plan.hosts[host].groups:
        net_name = group.network
        title = 'opportunistic group conn on network %s' % net_name
        policy = ''.join('%s\n' % subnet for subnet in group.subnets)
        text = conns_tpl.render(
            context, title=title, defaults=names.defaults_conn(net_name),
            conns=[group], group=True, aliases={})
        files[names.network_conf(net_name)] = (text, 0o644)
        files[names.group_policy(net_name)] = (policy, 0o644)
        if opts.cert_ca:
            c = group if certs else plan_mod.with_cert(group, host,
                                                       opts.cert_domain)
            wanted[c.cert] = {'id': c.left_id, 'network': net_name, 'vip': ''}
        if not certs:
            family = ':' in group.left
            row = derive.row(net_name, group.left) or [
                (address, derive.pair(net_name, group.left, address))
                for name, address in members[net_name]
                if name != host and (':' in address) == family]
            mine = group.left + ' '
            files[names.network_secrets(net_name)] = (secrets_tpl.render(
                title=title, epoch=epoch, lines=''.join([
                    mine + address + ' : PSK "' + psk + '"\n'
                    for address, psk in row])), 0o600)
        # what pluto loads for it: its stanza and the subnets it covers
        digests[group.name] = hashlib.sha256(
            (text.split('\nconn ', 1)[1] + policy).encode()).hexdigest()[:16]
        networks.add(net_name)
        groups[net_name] = group.name
        if opts.failure_policy == 'private':
            net.update(('%s#%s' % (group.name, subnet), [group.left, subnet])
                       for subnet in group.subnets)
    clear_tpl = _ENV.get_template('clear.conf.j2')
    by_network, clear = {}, {}
    for c in the_plan.hosts[host].clear:
        by_network.setdefault(c.network, []).append(c)
    for network, conns in sorted(by_network.items()):
        conf = names.clear_conf(network)
        text = clear_tpl.render(
            title='traffic exempted on network %s (%s)' % (network, ', '.join(
                sorted({c.exemption for c in conns}))),
            defaults=names.defaults_conn('clear-' + network), conns=conns)
        files[conf] = (text, 0o644)
        digests.update(_digests(text, conns))
        clear[network] = {c.name: c.exemption for c in conns}
    manifest = {
        'version': 1, 'host': host, 'key_epoch': epoch,
        'files': {'/' + path: '%04o' % mode
                  for path, (_, mode) in files.items()},
        'conns': digests, 'initiate': initiate,
        'networks': sorted(networks), 'auth': opts.auth, 'net': net}
    if clear:
        manifest['clear'] = clear
    if groups:
        manifest['groups'] = groups
        manifest['acquire_expires'] = GROUP_ACQUIRE_EXPIRES
    if opts.cert_ca:
        ipa = opts.cert_ca.upper() == 'IPA'
        for entry in wanted.values():
            entry['principal'] = (names.cert_principal(entry['id'])
                                  if ipa else '')
        manifest['certs'] = {
            'ca': opts.cert_ca, 'trust': list(opts.cert_trust),
            'margin_days': opts.cert_margin_days, 'certs': wanted}
    files[names.MANIFEST] = (manifest_text(manifest, vips), 0o644)
    return files


def manifest_text(manifest, vips):
    """The manifest's JSON, ``vips`` first and one line per VIP.

    The OCF agent reads its VIP's entry with the shell alone, on the path of
    every failover (no jq, no Python there): the first line is
    ``{"vips":{``, then each VIP's on a line of its own,
    ``"<vip>":{"address":...,"alias":...,"file":...,"holder":[...],
    "network":...,"peer":[...]}``, its keys in that order, then ``},`` and
    the rest of the manifest on one line.  JSON all the same, for every
    other reader.
    """
    entries = ['%s:%s' % (json.dumps(name), json.dumps(
        vips[name], sort_keys=True, separators=(',', ':')))
        for name in sorted(vips)]
    rest = json.dumps(manifest, sort_keys=True, separators=(',', ':'))
    return '{"vips":{\n%s},%s\n' % (
        ''.join('%s%s\n' % (entry, ',' if i < len(entries) - 1 else '')
                for i, entry in enumerate(entries)), rest[1:])


def _write_host(root, files):
    for directory in sorted({os.path.dirname(p) for p in files}):
        os.makedirs(os.path.join(root, directory), exist_ok=True)
    for path, (text, mode) in files.items():
        fd = os.open(os.path.join(root, path),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, 'w') as f:
            os.fchmod(fd, mode)
            f.write(text)
    ipsec_d = os.path.join(root, names.IPSEC_D)
    if os.path.isdir(ipsec_d):
        os.chmod(ipsec_d, 0o700)


# From this many hosts on, render's hosts are shared out among forked
# workers, one per CPU: a host's files cost O(peers) key lines (a key is
# about 3 us to derive), 2.5 million pairs at 1,000 nodes on 5 networks
# (bench/scale.py).  The workers inherit the plan and the key (nothing
# secret crosses a pipe), fill their shares of the key table, then render
# their hosts and return file counts only.
PARALLEL_FROM = 200
CHUNKS_PER_WORKER = 8
_SHARED = {}


def _worker_start(mask):
    """A worker ends on the signals that stop render, quietly.

    Forked with them held (see _write_hosts): the CLI's handler would
    raise in the worker too, and pool.terminate() sends each one SIGTERM;
    the parent unwinds and cleans up, the workers just go.
    """
    for signum in _HELD:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _derive_share(part):
    _, _, _, derive, parts = _SHARED['job']
    derive.derive(part, parts)


def _render_chunk(hosts):
    the_plan, master_key, tmp, derive, _ = _SHARED['job']
    written = {}
    for host in hosts:
        files = host_files(the_plan, host, master_key, derive)
        _write_host(os.path.join(tmp, host), files)
        written[host] = len(files)
    return written


def _write_hosts(the_plan, master_key, tmp):
    """Render every host of the plan under TMP: {host: number of files}."""
    hosts = sorted(the_plan.hosts)
    workers = min(os.cpu_count() or 1, 8)
    if len(hosts) < PARALLEL_FROM:
        workers = 1
    derive = _Keys(master_key, the_plan.options.key_epoch,
                   the_plan.members if the_plan.options.auth == 'psk'
                   else None)
    _SHARED['job'] = (the_plan, master_key, tmp, derive, workers)
    mask = None
    # the plan is millions of objects at scale and makes no garbage: out of
    # the collector's sight while render runs (it walked them all, again
    # and again, a third of render's time), and not written to by a
    # worker's collector (each page it touched, copied)
    gc.freeze()
    try:
        if workers < 2:
            derive.derive()
            return _render_chunk(hosts)
        # small chunks, each to the next free worker: hosts differ (a
        # controller holds every VIP's conns), and so do the workers' CPUs
        size = -(-len(hosts) // (workers * CHUNKS_PER_WORKER))
        chunks = [hosts[i:i + size] for i in range(0, len(hosts), size)]
        written = {}
        # forked with the stopping signals held, so no worker runs the
        # parent's handler before its initializer resets it; the parent
        # takes any held signal once the pool is there to terminate
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        with multiprocessing.get_context('fork').Pool(
                workers, _worker_start, (mask,)) as pool:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            pool.map(_derive_share, range(workers), chunksize=1)
            for part in pool.imap_unordered(_render_chunk, chunks):
                written.update(part)
        return written
    finally:
        gc.unfreeze()
        _SHARED.clear()
        derive.close()
        if mask is not None:
            # again (a no-op) unless the pool failed to start
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _check_out(out):
    if not os.path.lexists(out):
        return False
    if not os.path.isdir(out) or os.path.islink(out):
        raise Error('output %s exists and is not a directory' % out)
    if os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        raise Error('output %s is not empty and was not written by '
                    'tripleo-ipsec; refusing to replace it' % out)
    return True


def write(the_plan, master_key, out):
    """Render every host of the plan into ``out``, atomically.

    Returns {host: number of files}.
    """
    out = os.path.abspath(out)
    exists = _check_out(out)
    parent = os.path.dirname(out)
    # named first and made inside the try: a signal that lands just after
    # the directory is made still finds the cleanup (tests send SIGTERM
    # the moment it appears)
    tmp = os.path.join(parent, '.tripleo-ipsec-new-%s' % uuid.uuid4().hex)
    written = {}
    try:
        try:
            os.mkdir(tmp, 0o700)
        except OSError as exc:
            tmp = None          # not ours (or not made): left alone
            raise Error('output %s: cannot write in %s: %s'
                        % (out, parent, exc.strerror))
        os.chmod(tmp, 0o755)
        with open(os.path.join(tmp, MARKER), 'w') as f:
            f.write('rendered by tripleo-ipsec; replaced on every render\n')
        with open(os.path.join(tmp, names.PACEMAKER_COMMANDS), 'w') as f:
            json.dump({'commands': pacemaker.commands(the_plan.vips)}, f,
                      indent=1, sort_keys=True)
        written = _write_hosts(the_plan, master_key, tmp)
        # the swap runs with termination signals held: stopped half-way,
        # it would leave neither output in place
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        try:
            if exists:
                old = tempfile.mkdtemp(prefix='.tripleo-ipsec-old-',
                                       dir=parent)
                os.rename(out, os.path.join(old, 'out'))
                os.rename(tmp, out)
                shutil.rmtree(old)
            else:
                os.rename(tmp, out)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written
