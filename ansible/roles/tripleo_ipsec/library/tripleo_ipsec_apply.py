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
module: tripleo_ipsec_apply
short_description: Install a node's tripleo-ipsec bundle and reconcile pluto
description:
  - Writes the node's files as rendered by C(tripleo-ipsec render) (modes
    kept, secrets 0600, each file written to a temporary name and renamed),
    removes files of the previous bundle that are gone, then reconciles the
    running pluto conn by conn from the bundle's manifest, adding new conns,
    replacing changed ones in place and deleting those no longer in the
    bundle, all new and changed conns in one C(addconn) run, by name.
    Pluto is never restarted.  Nothing changes when the bundle is what is
    installed.
  - Conns pluto refuses to load or route (a certificate it cannot find)
    are listed, with pluto's reason, in the result's C(not_loaded) and as
    warnings; the safety net covers their pairs and C(tripleo-ipsec
    verify) names them.
  - Secrets are never reread while a loaded conn signs with a
    certificate on libreswan older than 5.2 (libreswan bug 1894: the
    reread frees private keys a crypto helper is using).  Keys a psk to
    cert switch removed then stay in pluto's memory, unused, until its
    next start (result C(secrets_kept)).
  - With failure policy private (the manifest's C(net)), first installs
    the kernel's safety net for every pair it leaves loaded (one
    C(action block) xfrm policy per direction, below pluto's), so that a
    pair pluto has no policy for is dropped, never in clear; removes the
    net's policies no loaded conn needs once their conns are gone.
  - Installs a drop-in of the ipsec service,
    C(/etc/systemd/system/ipsec.service.d/tripleo-ipsec.conf), whose
    C(ExecStopPost) keeps the net where the service's own flush left it
    out until the next deploy: nothing flushed after a clean shutdown,
    and after a crash the flush and the net's return in one C(ip -batch)
    run (C(/etc/ipsec.d/tripleo-ipsec-stop.batch), kept up to date).
    Result C(service): the files it wrote; C(service_reload): systemd
    must reread its units.  C(absent) removes both.
  - The conns are written and loaded in the syntax of the libreswan on the
    node (4.x or 5.x, from C(ipsec --version)), whichever the bundle was
    rendered for.
  - Normally called through the action plugin of the same name, which reads
    the bundle from the controller.
  - VIP-holder conns are left to the VIP's OCF resource; a loaded one is
    kept up to date.
options:
  files:
    description: The bundle, relative path -> {mode, content}.
    type: dict
  manifest:
    description: Relative path of the manifest within the bundle.
    type: str
    required: true
  state:
    description: C(present) installs, C(absent) removes everything a
      previous run installed, from disk and from pluto.
    type: str
    choices: [present, absent]
    default: present
  root:
    description: Where the node's / is.
    type: path
    default: /
  ctlsocket:
    description: pluto's control socket (default pluto's own, as the
      module_utils tripleo_ipsec_names says).
    type: path
  initiate:
    description: Start negotiating the new conns this end initiates.
    type: bool
    default: true
  vips:
    description: Load the conns towards VIPs too.  TripleO's step 1 loads
      host-to-host conns only, before pacemaker forms; step 3, once the
      VIPs and their OCF resources exist, loads the VIP conns.  When false,
      VIP conns already loaded are kept (and kept up to date), not removed.
    type: bool
    default: true
  timeout:
    description: Seconds any one libreswan command may take.
    type: int
    default: 120
  stage:
    description:
      - Write new keys but leave pluto on the ones it has (result
        C(staged)), so that every node can reread them in one later step.
        Conns added or replaced in this run get theirs at once.  A key
        change never replaces a conn, staged or not.
    type: bool
    default: false
  agent:
    description:
      - The VIPs' OCF agent, as C({dest, content}), installed (mode 0755)
        with C(present) and removed with C(absent).  The action plugin
        fills C(content) from the role's C(files/ocf/vip) when the task
        gives C(agent_dir).
    type: dict
'''

import os  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils import tripleo_ipsec_names as names  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import holder_conns  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import Libreswan  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import LibreswanError  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import stop_batch  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import group_addresses  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import group_conns  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import net_wanted  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import service_dropin  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import parse_manifest  # noqa
from ansible.module_utils.tripleo_ipsec_libreswan import split_conf  # noqa


def _read(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except FileNotFoundError:
        return None


def _same(path, content, mode):
    old = _read(path)
    return (old is not None and old == content and
            (os.stat(path).st_mode & 0o7777) == mode)


def _write(path, content, mode):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tripleo-ipsec-')
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as f:
            f.write(content)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def agent(module, spec, state):
    """Install or remove the OCF agent; True when that changed it."""
    path = spec['dest']
    if state == 'absent':
        if not os.path.exists(path):
            return False
        if not module.check_mode:
            os.unlink(path)
        return True
    content = spec['content'].encode()
    if _same(path, content, 0o755):
        return False
    if not module.check_mode:
        _write(path, content, 0o755)
    return True


def _net_entry(key):
    src, dst, direction = key
    return '%s %s -> %s' % (direction, src, dst)


def _loaded(status):
    return {n for n in status if names.ours(n)}


def adapt(lw, files):
    """The bundle with its conns in the syntax of the libreswan here.

    The bundle is rendered before libreswan is on the node: the node's own
    ``ipsec --version`` (asked once) decides, before anything is compared,
    written or loaded, so a rerun compares like with like.
    """
    return {rel: ({'mode': entry['mode'],
                   'content': lw.adapt(entry['content'])}
                  if rel.endswith('.conf') else entry)
            for rel, entry in files.items()}


def present(module, lw, root, files, manifest_path):
    files = adapt(lw, files)
    new = parse_manifest(files[manifest_path]['content'], 'the bundle\'s '
                         'manifest')
    old = parse_manifest(_read(os.path.join(root, manifest_path)) or '{}',
                         'the installed manifest')
    result = {'written': [], 'removed': [], 'added': [], 'replaced': [],
              'deleted': [], 'staged': False, 'net_added': [],
              'net_removed': [], 'not_loaded': [], 'secrets_kept': False,
              'service': []}

    for rel, entry in sorted(files.items()):
        if rel == manifest_path:
            continue        # written last, once pluto agrees
        content = entry['content'].encode()
        mode = int(entry['mode'], 8)
        if not _same(os.path.join(root, rel), content, mode):
            result['written'].append('/' + rel)
    gone = sorted(set(old.get('files', {})) - set(new['files']))
    result['removed'] = [p for p in gone
                         if os.path.lexists(os.path.join(root, p[1:]))]

    status = lw.status()
    loaded = _loaded(status)
    holders = holder_conns(new)
    vip_peers = {n for vip in new.get('vips', {}).values()
                 for n in vip.get('peer', [])}
    later = set() if module.params['vips'] else vip_peers - loaded
    wanted = {n for n in new['conns'] if n not in holders | later} | (
        holders & loaded)
    old_conns = old.get('conns', {})
    replace = sorted(n for n in wanted & loaded
                     if old_conns.get(n) != new['conns'][n])
    result['deleted'] = sorted(loaded - wanted)
    result['added'] = sorted(wanted - loaded)
    result['replaced'] = replace
    touched = result['added'] + result['replaced']
    # the kernel's safety net follows the conns this run leaves loaded
    have_net = lw.net()
    want_net = net_wanted(new, wanted)
    net_add = sorted(want_net - have_net)
    net_drop = sorted(have_net - want_net)
    result['net_added'] = [_net_entry(k) for k in net_add]
    result['net_removed'] = [_net_entry(k) for k in net_drop]
    # the ipsec service's drop-in and its batch: the flush once pluto has
    # stopped, and the net back in the same ip run; in mode group a stop
    # that leaves pluto's state (no Delete to the peers)
    service = {names.STOP_BATCH: stop_batch(want_net).encode(),
               names.SERVICE_DROPIN: service_dropin(
                   group_conns(new).values(), group_addresses(new)).encode()}
    result['service'] = ['/' + rel for rel, content in sorted(service.items())
                         if not _same(os.path.join(root, rel), content,
                                      0o644)]
    secrets_changed = any(p.endswith('.secrets')
                          for p in result['written'] + result['removed'])
    acquire = int(new.get('acquire_expires', 0))
    result['acquire_expires'] = bool(acquire) and lw.acquire_expires(
        acquire, check=True)
    changed = bool(result['written'] or result['removed'] or touched or
                   result['deleted'] or net_add or net_drop or
                   result['service'] or
                   result['acquire_expires'] or not _same(
                       os.path.join(root, manifest_path),
                       files[manifest_path]['content'].encode(),
                       int(files[manifest_path]['mode'], 8)))
    if module.check_mode or not changed:
        return changed, result

    for rel in result['written']:
        entry = files[rel[1:]]
        _write(os.path.join(root, rel[1:]), entry['content'].encode(),
               int(entry['mode'], 8))
    for rel in result['removed']:
        os.unlink(os.path.join(root, rel[1:]))

    # The net first: from here on, a moment with no policy of pluto's for
    # a pair (a conn replaced, or one that fails to load) drops, never
    # sends or takes in clear.
    for src, dst, direction in net_add:
        lw.net_add(src, dst, direction)
    for rel in result['service']:
        _write(os.path.join(root, rel[1:]), service[rel[1:]], 0o644)
    result['service_reload'] = '/' + names.SERVICE_DROPIN in result['service']
    # A changed conn is replaced in place: addconn swaps the definition
    # inside pluto, in one request; deleting it first would leave its
    # traffic without any policy (in clear) until it was added again.
    for name in result['deleted']:
        lw.delete(name)
    # A new key changes secrets files only.  Pluto uses a PSK in IKE_AUTH
    # alone (RFC 7296 2.15): live SAs and their rekeys never read it again.
    # Staged, the new keys wait on disk until the role's next task rereads
    # them on every node at once; conns added now need theirs first.  A
    # reread while cert conns sign may kill pluto 4.10 (SAFE_REREAD): it
    # waits for the conns that replace them, or for pluto's next start.
    new_keys = any(p.endswith('.secrets') for p in result['written'])
    reread = new_keys and (touched or not module.params['stage'])
    result['staged'] = new_keys and not reread
    if reread and lw.reread_is_safe(status):
        lw.rereadsecrets()
        reread = False
    sections = {}
    for rel, entry in files.items():
        if rel.endswith('.conf'):
            sections.update(split_conf(entry['content']))
    # mode group: the kernel's ACQUIRE lifetime, which also bounds an SPI
    # pluto reserved until its SA goes in (render.py has the figures), set
    # before the group conns' traps go in
    if acquire:
        lw.acquire_expires(acquire)
    failed = lw.add(sections, touched)
    result['not_loaded'] = ['%s: %s' % kv for kv in sorted(failed.items())]
    for line in result['not_loaded']:
        module.warn('pluto did not load or route %s' % line)
    # Keys that are gone (psk -> cert) are forgotten only now that no conn
    # of ours uses them: until its replacement a psk conn may still have
    # to authenticate (a peer's Delete revives it), and pluto 4.10 without
    # its key failed that with an internal error, then aborted
    # (ikev2_process_sa_payload assertion) in the lab's switch.
    if reread or (secrets_changed and not new_keys):
        if lw.reread_is_safe():
            lw.rereadsecrets()
        else:
            result['secrets_kept'] = True
    if module.params['initiate']:
        for name in sorted(set(touched) & set(new.get('initiate', [])) -
                           set(failed)):
            lw.initiate(name)
    # the pairs this node no longer protects, once their conns are gone
    for key in net_drop:
        lw.net_delete(*key)
    entry = files[manifest_path]
    _write(os.path.join(root, manifest_path), entry['content'].encode(),
           int(entry['mode'], 8))
    return True, result


def absent(module, lw, root, manifest_path):
    old = parse_manifest(_read(os.path.join(root, manifest_path)) or '{}',
                         'the installed manifest')
    result = {'removed': [], 'deleted': []}
    if lw.running():
        result['deleted'] = sorted(_loaded(lw.status()))
    have_net = lw.net()
    result['net_removed'] = [_net_entry(k) for k in sorted(have_net)]
    paths = sorted(set(old.get('files', {})) | {
        '/' + manifest_path, '/' + names.STOP_BATCH,
        '/' + names.SERVICE_DROPIN})
    result['removed'] = [p for p in paths
                         if os.path.lexists(os.path.join(root, p[1:]))]
    changed = bool(result['removed'] or result['deleted'] or have_net)
    if module.check_mode or not changed:
        return changed, result
    for name in result['deleted']:
        lw.delete(name)
    # the conns are gone: what they carried goes in clear from here on
    for key in sorted(have_net):
        lw.net_delete(*key)
    for rel in result['removed']:
        os.unlink(os.path.join(root, rel[1:]))
    result['service_reload'] = '/' + names.SERVICE_DROPIN in result['removed']
    if result['deleted'] or any(p.endswith('.secrets')
                                for p in result['removed']):
        lw.rereadsecrets()
    return True, result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type='dict', no_log=True),
            manifest=dict(type='str', required=True),
            state=dict(type='str', default='present',
                       choices=['present', 'absent']),
            root=dict(type='path', default='/'),
            ctlsocket=dict(type='path', default=names.CTLSOCKET),
            initiate=dict(type='bool', default=True),
            vips=dict(type='bool', default=True),
            timeout=dict(type='int', default=120),
            stage=dict(type='bool', default=False),
            agent=dict(type='dict', no_log=True),
        ),
        required_if=[('state', 'present', ['files'])],
        supports_check_mode=True,
    )
    params = module.params
    lw = Libreswan(params['ctlsocket'], params['timeout'])
    try:
        if params['state'] == 'present':
            if params['manifest'] not in params['files']:
                module.fail_json(msg='the bundle has no %s'
                                 % params['manifest'])
            if not lw.running():
                module.fail_json(msg='pluto is not running (control socket '
                                 '%s)' % params['ctlsocket'])
            changed, result = present(module, lw, params['root'],
                                      params['files'], params['manifest'])
        else:
            changed, result = absent(module, lw, params['root'],
                                     params['manifest'])
        if params['agent']:
            result['agent'] = [params['agent']['dest']] if agent(
                module, params['agent'], params['state']) else []
            changed = changed or bool(result['agent'])
    except (LibreswanError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    summary = {k: len(v) for k, v in result.items() if isinstance(v, list)}
    module.exit_json(changed=changed, summary=summary, **result)


if __name__ == '__main__':
    main()
