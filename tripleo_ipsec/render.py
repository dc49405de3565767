"""Plan + master key -> files, one tree per host, rooted as on the node.

``OUT/<host>/etc/ipsec.d/tripleo-<network>.conf`` and ``.secrets`` hold a
network's host-to-host conns and their keys; ``tripleo-vip-<vip>.conf`` and
``.secrets`` a VIP's conns; ``var/lib/tripleo-ipsec/manifest.json`` lists
every conn with a digest, so the node side can reconcile conn by conn.
Secrets files are 0600.  The whole output appears at once (rendered in a
temporary directory beside OUT, then renamed), or not at all.
"""

import hashlib
import json
import os
import shutil
import tempfile

import jinja2

from tripleo_ipsec.errors import Error
from tripleo_ipsec import names
from tripleo_ipsec import plan as plan_mod

MARKER = '.tripleo-ipsec-output'

# Where libreswan 4.x and 5.x differ in ipsec.conf syntax: only here.
SYNTAX = {
    '4': {'keyexchange': 'ikev2=insist'},
    '5': {'keyexchange': 'keyexchange=ikev2'},
}
SHUNTS = {
    'private': {'failure': 'drop', 'negotiation': 'hold'},
    'private-or-clear': {'failure': 'passthrough',
                         'negotiation': 'passthrough'},
}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader('tripleo_ipsec', 'templates'),
    trim_blocks=True, keep_trailing_newline=True, autoescape=False,
    undefined=jinja2.StrictUndefined)


def _groups(host_plan):
    """A host's conns grouped by the file they go to, in file order."""
    groups = {}
    for conn in host_plan.conns:
        if conn.kind == plan_mod.HOST:
            key = (names.network_conf(conn.network),
                   names.network_secrets(conn.network),
                   'host-to-host conns on network %s' % conn.network)
        else:
            key = (names.vip_conf(conn.vip), names.vip_secrets(conn.vip),
                   'conns of VIP %s on network %s' % (conn.vip, conn.network))
        groups.setdefault(key, []).append(conn)
    return groups


def host_files(the_plan, host, master_key):
    """The files of one host: {relative path: (text, mode)}."""
    opts = the_plan.options
    context = {'ike': opts['ike'], 'esp': opts['esp'],
               'syntax': SYNTAX[opts['libreswan_version']],
               'shunt': SHUNTS[opts['failure_policy']]}
    epoch = opts['key_epoch']
    conns_tpl = _ENV.get_template('conns.conf.j2')
    secrets_tpl = _ENV.get_template('secrets.j2')
    files, manifest = {}, {}
    for (conf, secrets, title), conns in _groups(
            the_plan.hosts[host]).items():
        text = conns_tpl.render(context, title=title, conns=conns)
        files[conf] = (text, 0o644)
        keys = [(c.left, c.right,
                 master_key.psk(c.network, c.left, c.right, epoch))
                for c in conns]
        files[secrets] = (secrets_tpl.render(title=title, epoch=epoch,
                                             keys=keys), 0o600)
        stanzas = text.split('\nconn ')[1:]
        for conn, stanza in zip(conns, stanzas):
            digest = hashlib.sha256(
                ('%s\nepoch=%d' % (stanza, epoch)).encode()).hexdigest()
            manifest[conn.name] = {
                'file': '/' + conf, 'kind': conn.kind,
                'network': conn.network, 'vip': conn.vip,
                'initiator': conn.initiator, 'auto': conn.auto,
                'digest': digest[:16]}
    files[names.MANIFEST] = (json.dumps(
        {'version': 1, 'host': host, 'key_epoch': epoch,
         'files': sorted('/' + p for p in files),
         'conns': manifest}, indent=1, sort_keys=True) + '\n', 0o644)
    return files


def _write_host(root, files):
    for path, (text, mode) in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.chmod(full, mode)
    ipsec_d = os.path.join(root, names.IPSEC_D)
    if os.path.isdir(ipsec_d):
        os.chmod(ipsec_d, 0o700)


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
    try:
        tmp = tempfile.mkdtemp(prefix='.%s.' % os.path.basename(out),
                               dir=parent)
    except OSError as exc:
        raise Error('output %s: cannot write in %s: %s'
                    % (out, parent, exc.strerror))
    written = {}
    try:
        os.chmod(tmp, 0o755)
        with open(os.path.join(tmp, MARKER), 'w') as f:
            f.write('rendered by tripleo-ipsec; replaced on every render\n')
        for host in sorted(the_plan.hosts):
            files = host_files(the_plan, host, master_key)
            _write_host(os.path.join(tmp, host), files)
            written[host] = len(files)
        if exists:
            old = tempfile.mkdtemp(prefix='.%s.old.' % os.path.basename(out),
                                   dir=parent)
            os.rename(out, os.path.join(old, 'out'))
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written
