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

"""The real ``tripleo-ipsec`` command, run as a subprocess.

Bad input of every kind is refused with exactly one line on stderr, a
non-zero exit, no output directory, no temporary leftovers and no key
material; the good paths give parseable JSON/YAML and tables, write secrets
0600 and replace a previous render atomically.
"""

import base64
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time

import yaml

from tests import base
from tripleo_ipsec import keys
from tripleo_ipsec import sources
from tripleo_ipsec_lab import synth

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
STOCK = os.path.join(base.FIXTURES, 'stock.json')
PREFIX = 'tripleo-ipsec: error: '
DEFAULT_NETWORKS = ['internal_api', 'storage', 'storage_mgmt']
HOSTS = ['overcloud-controller-0', 'overcloud-controller-1',
         'overcloud-controller-2', 'overcloud-novacompute-0',
         'overcloud-novacompute-1']
DEFAULT_OPTIONS = {
    'skip_networks': ['tenant', 'external', 'ctlplane'],
    'ike': 'aes_gcm256-sha2_256-dh19',
    'esp': 'aes_gcm256',
    'failure_policy': 'private',
    'encapsulation': 'auto',
    'compress': False,
    'clear_exemptions': [],
    'mode': 'auto',
    'conn_budget': 500,
    'mtu_floor': 1280,
    'key_epoch': 0,
    'auth': 'psk',
    'cert_ca': '',
    'cert_trust': ['/etc/ipa/ca.crt'],
    'cert_domain': 'localdomain',
    'cert_margin_days': 14,
    'vip_networks': {},
}


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (TOP, env.get('PYTHONPATH')) if p)
    env.pop('PYTHONWARNINGS', None)
    return env


def _limited():
    """What a bad input may cost: 2 GiB of address space."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_cli(*args, cwd=None, timeout=120):
    """Run ``python -m tripleo_ipsec.cli ARGS``; the CompletedProcess.

    In 2 GiB of address space, as every bad input must be refused in.
    """
    return subprocess.run(
        [sys.executable, '-m', 'tripleo_ipsec.cli'] + list(args),
        cwd=cwd or TOP, env=_env(), capture_output=True, text=True,
        timeout=timeout, preexec_fn=_limited)


def stock_outputs():
    """The stock overcloud's outputs, as a plain key -> value mapping."""
    return synth.stack_outputs([synth.controller(3), synth.compute(2)])


def table_rows(text):
    """The cells of every '| a | b |' line of a table, header first."""
    return [[c.strip() for c in line.strip().strip('|').split('|')]
            for line in text.splitlines() if line.startswith('| ')]


class CliTestCase(base.TestCase):
    """A work directory holding the inputs and a valid master key."""

    def setUp(self):
        super(CliTestCase, self).setUp()
        self.work = self.tempdir()
        self.key = os.path.join(self.work, 'master.key')
        keys.create(self.key)
        self.secrets = [self.read(self.key).strip()]

    def read(self, path):
        with open(path) as f:
            return f.read()

    def write(self, name, text, mode=None):
        path = os.path.join(self.work, name)
        with open(path, 'w') as f:
            f.write(text)
        if mode is not None:
            os.chmod(path, mode)
        return path

    def write_json(self, name, data):
        return self.write(name, json.dumps(data, indent=1))

    def write_yaml(self, name, data):
        return self.write(name, yaml.safe_dump(data,
                                               default_flow_style=False))

    def assertNoSecret(self, *texts):
        for secret in self.secrets:
            for text in texts:
                self.assertNotIn(secret, text)
                self.assertNotIn(secret[:16], text)

    def assertOk(self, result):
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual('', result.stderr)
        self.assertNoSecret(result.stdout, result.stderr)
        return result.stdout

    def assertOneErrorLine(self, result, words, prefix=PREFIX):
        self.assertNotEqual(0, result.returncode, result.stdout)
        self.assertNotIn('Traceback', result.stderr)
        lines = result.stderr.splitlines()
        self.assertEqual(1, len(lines), result.stderr)
        self.assertTrue(result.stderr.endswith('\n'), result.stderr)
        if hasattr(prefix, 'match'):
            self.assertIsNotNone(prefix.match(lines[0]), lines[0])
        else:
            self.assertTrue(lines[0].startswith(prefix), lines[0])
        self.assertGreater(len(lines[0]), len(PREFIX) + 10, lines[0])
        for word in words:
            self.assertIn(word, lines[0])
        self.assertEqual('', result.stdout)
        self.assertNoSecret(result.stdout, result.stderr)
        return lines[0]

    def render(self, *args, **kw):
        """Run render into WORK/out; the CompletedProcess."""
        key = kw.pop('key', self.key)
        timeout = kw.pop('timeout', 120)
        out = kw.pop('out', os.path.join(self.work, 'out'))
        source = kw.pop('source', ('--stack-outputs', STOCK))
        self.assertEqual({}, kw)
        return run_cli('render', *(tuple(source) + args +
                                   ('--master-key-file', key, '--out', out)),
                       timeout=timeout)

    def assertRefused(self, words, *args, **kw):
        """render with ARGS fails with one clean line and leaves nothing."""
        out = os.path.join(self.work, 'out')
        before = sorted(os.listdir(self.work))
        # a bad input is refused within 30 s (and 2 GiB: run_cli)
        result = self.render(*args, out=out, timeout=30, **kw)
        line = self.assertOneErrorLine(result, words)
        self.assertFalse(os.path.lexists(out), line)
        self.assertEqual(before, sorted(os.listdir(self.work)), line)
        return line


def _set_address(net, value, role='Compute', index=0):
    def change(outputs, cidrs):
        outputs['RoleNetIpMap'][role][net][index] = value
    return change


def _set_vip(name, value):
    def change(outputs, cidrs):
        outputs['VipMap'][name] = value
    return change


def _set_cidr(net, value):
    def change(outputs, cidrs):
        cidrs[net] = value
    return change


def _rename_host(old, new):
    def change(outputs, cidrs):
        names = outputs['RoleNetHostnameMap']['Compute']['ctlplane']
        names[names.index(old)] = new
    return change


def _rename_network(role, old, new):
    def change(outputs, cidrs):
        ips = outputs['RoleNetIpMap'][role]
        ips[new] = ips.pop(old)
        host_names = outputs['RoleNetHostnameMap'][role]
        host_names[new] = host_names.pop(old)
    return change


def _rename_vip(old, new):
    def change(outputs, cidrs):
        outputs['VipMap'][new] = outputs['VipMap'].pop(old)
    return change


# What the deploy could hand us that would change what a rendered file
# says, by class: (change to the stock outputs / net_cidr_map, words the one
# stderr line must hold).
HOSTILE = {
    'zone id with an injected key': (_set_address(
        'internal_api', 'fd00::d%eth0\nleftprotoport=udp'),
        ['zone ids', 'overcloud-novacompute-0', 'internal_api']),
    'zone id': (_set_address('storage', 'fd00::d%eth0'),
                ['zone ids', 'overcloud-novacompute-0', 'storage']),
    'non-ASCII zone id': (_set_address('internal_api', 'fe80::1%\xe9'),
                          ['zone ids', 'overcloud-novacompute-0']),
    'IPv4-mapped IPv6': (_set_address('internal_api', '::ffff:172.16.2.99'),
                         ['IPv4-mapped', 'overcloud-novacompute-0',
                          'internal_api']),
    'address with a newline': (_set_address(
        'internal_api', '172.16.2.99\nauto=ignore'),
        ['not an IP address', 'overcloud-novacompute-0']),
    'VIP with a zone id': (_set_vip('internal_api', '172.16.2.5%x'),
                           ['VIP internal_api', 'zone ids']),
    'VIP IPv4-mapped': (_set_vip('storage', '::ffff:172.16.1.5'),
                        ['VIP storage', 'IPv4-mapped']),
    'CIDR with a zone id': (_set_cidr('internal_api', ['fe80::%eth0/64']),
                            ['net_cidr_map.internal_api', 'zone ids']),
    'CIDR IPv4-mapped': (_set_cidr('storage', ['::ffff:172.16.1.0/120']),
                         ['net_cidr_map.storage', 'IPv4-mapped']),
    'host name ending in a newline': (_rename_host(
        'overcloud-novacompute-1.ctlplane.localdomain',
        'overcloud-novacompute-1\n.ctlplane.localdomain'),
        ['not a valid host name', 'overcloud-novacompute-1']),
    'network name ending in a newline': (_rename_network(
        'Compute', 'storage', 'storage\n'),
        ['not a valid network name', 'storage']),
    'VIP name ending in a newline': (_rename_vip('redis', 'redis\n'),
                                     ['VIP name', 'redis']),
    'net_cidr_map network ending in a newline': (
        _set_cidr('storage\n', ['172.16.1.0/24']),
        ['net_cidr_map', 'not a valid network name']),
}


class TestConsistency(CliTestCase):

    def test_a_vip_outside_its_networks_subnets(self):
        outputs, cidrs = stock_outputs(), synth.net_cidr_map()
        outputs['VipMap']['internal_api'] = '172.16.9.5'
        source = self.write_json('outputs.json', outputs)
        cidr_map = self.write_json('cidrs.json', cidrs)
        self.assertRefused(['VIP internal_api', '172.16.9.5',
                            'no subnet of network internal_api'],
                           '--net-cidr-map', cidr_map,
                           source=('--stack-outputs', source))

    def test_a_role_scaled_to_zero(self):
        # THT lists a role with count 0 with no hosts; tripleo-common
        # would stop on it
        outputs = synth.stack_outputs([synth.controller(3),
                                       synth.compute(0)])
        source = self.write_json('outputs.json', outputs)
        plan = json.loads(self.assertOk(run_cli(
            'plan', '--stack-outputs', source, '-f', 'json')))
        self.assertEqual(['overcloud-controller-0', 'overcloud-controller-1',
                          'overcloud-controller-2'], sorted(plan['hosts']))


class TestRoleRenderModule(CliTestCase):
    """The role's render module refuses what the CLI refuses.

    Run by ansible itself (an ad-hoc task on localhost) against the
    inventory tripleo-common writes from the hostile outputs.
    """

    def _module(self, outputs, cidrs):
        inventory = os.path.join(self.work, 'inventory.yaml')
        with sources.quiet():
            sources.tripleo_inventory(outputs).write_static_inventory(
                inventory)
        out = os.path.join(self.work, 'bundles')
        args = {'inventory': inventory, 'net_cidr_map': cidrs,
                'net_vip_map': outputs['VipMap'],
                'master_key_file': self.key, 'out': out}
        role = os.path.join(TOP, 'ansible', 'roles', 'tripleo_ipsec')
        env = dict(_env(), ANSIBLE_LIBRARY=os.path.join(role, 'library'),
                   ANSIBLE_MODULE_UTILS=os.path.join(role, 'module_utils'),
                   ANSIBLE_STDOUT_CALLBACK='tripleo_ipsec_json',
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(
                       TOP, 'tripleo_ipsec_lab', 'callback_plugins'),
                   ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   PATH=os.path.dirname(sys.executable) + os.pathsep +
                   os.environ.get('PATH', ''))
        result = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), 'ansible'),
             'localhost', '-i', 'localhost,', '-c', 'local',
             '-m', 'tripleo_ipsec_render', '-a', json.dumps(args)],
            cwd=self.work, env=env, capture_output=True, text=True,
            timeout=300)
        self.assertTrue(result.stdout.strip(), result.stderr)
        report = json.loads(result.stdout)
        task = report['tasks'][0]['hosts']['localhost']
        return result, task, out

    def test_names_and_addresses(self):
        checked = 0
        for case in ('zone id with an injected key', 'IPv4-mapped IPv6',
                     'VIP with a zone id', 'CIDR with a zone id',
                     'network name ending in a newline',
                     'net_cidr_map network ending in a newline'):
            change, words = HOSTILE[case]
            outputs, cidrs = stock_outputs(), synth.net_cidr_map()
            change(outputs, cidrs)
            result, task, out = self._module(outputs, cidrs)
            self.assertNotEqual(0, result.returncode, case)
            self.assertTrue(task.get('failed'), case)
            self.assertEqual(1, len(task['msg'].splitlines()), task['msg'])
            self.assertNotIn('Traceback', task['msg'])
            for word in words:
                self.assertIn(word, task['msg'], case)
            self.assertFalse(os.path.lexists(out), case)
            checked += 1
        # and the same module renders the untouched outputs
        result, task, out = self._module(stock_outputs(),
                                         synth.net_cidr_map())
        self.assertEqual(0, result.returncode, task.get('msg'))
        self.assertTrue(os.path.isdir(out))
        self.assertEqual(6, checked)


class TestInterrupted(CliTestCase):

    def test_a_failed_render_leaves_no_new_key(self):
        # the key is created, then the render fails: the key goes too
        path = os.path.join(self.work, 'new.key')
        out = os.path.join(self.work, 'out')
        os.mkdir(out)
        self.write(os.path.join('out', 'foreign.txt'), 'not ours\n')
        result = run_cli('render', '--stack-outputs', STOCK,
                         '--master-key-file', path, '--create-master-key',
                         '--out', out)
        self.assertOneErrorLine(result, [out])
        self.assertFalse(os.path.lexists(path))
        self.assertEqual(['foreign.txt'], os.listdir(out))

    def _stop_a_render(self, when, signum, group):
        """Start a render of 243 hosts (forked workers), signal it WHEN.

        WHEN is 'tree' (its temporary tree just made) or 'hosts' (the
        workers writing host directories); GROUP sends the signal to the
        whole process group, as a terminal's ^C or systemd's stop does.
        """
        outputs = synth.stack_outputs([synth.controller(3),
                                       synth.compute(240)])
        source = self.write_json('big.json', outputs)
        parent = os.path.join(self.work, 'renders')
        os.mkdir(parent)
        out = os.path.join(parent, 'out')
        proc = subprocess.Popen(
            [sys.executable, '-m', 'tripleo_ipsec.cli', 'render',
             '--stack-outputs', source, '--master-key-file', self.key,
             '--out', out], cwd=TOP, env=_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.addCleanup(_kill_group, proc.pid)
        deadline = time.monotonic() + 60

        def ready():
            tmp = os.listdir(parent)
            if not tmp or when == 'tree':
                return bool(tmp)
            # a worker's host directory, beside the marker and the json
            return any(not n.startswith('.') and not n.endswith('.json')
                       for n in os.listdir(os.path.join(parent, tmp[0])))

        while not ready() and proc.poll() is None:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.002)
        # the temporary tree (with secrets) exists: stop it now
        self.assertIsNone(proc.poll(), 'the render ended before the signal')
        self.assertTrue(os.listdir(parent)[0].startswith(
            '.tripleo-ipsec-new-'))
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
        name = signal.Signals(signum).name
        self.assertEqual(128 + signum, proc.returncode, stderr)
        # one line: no worker's traceback beside it
        self.assertEqual(['tripleo-ipsec: error: stopped by %s' % name],
                         stderr.splitlines())
        self.assertEqual([], os.listdir(parent))
        # and no worker left behind in the render's process group
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid):
            self.assertLess(time.monotonic(), deadline,
                            'a worker outlived the render')
            time.sleep(0.05)

    def test_sigterm_as_the_tree_appears_leaves_nothing(self):
        self._stop_a_render('tree', signal.SIGTERM, group=False)

    def test_sigterm_while_the_workers_write_leaves_nothing(self):
        # the pool's terminate() sends SIGTERM to each worker: a worker
        # that kept the CLI's handler raised there and printed its
        # traceback (found by CI on a faster machine)
        self._stop_a_render('hosts', signal.SIGTERM, group=False)

    def test_sigterm_to_the_group_leaves_nothing(self):
        self._stop_a_render('hosts', signal.SIGTERM, group=True)

    def test_ctrl_c_leaves_nothing(self):
        self._stop_a_render('hosts', signal.SIGINT, group=True)


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(pgid):
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)


class TestHostileInput(CliTestCase):
    """Input that would reach a file as more than what it is.

    An address, a name or a CIDR that ipsec.conf, a file name or a pcs id
    would take as more: refused with one line, nothing written.
    """

    def test_every_class(self):
        for case, (change, words) in sorted(HOSTILE.items()):
            outputs, cidrs = stock_outputs(), synth.net_cidr_map()
            change(outputs, cidrs)
            source = self.write_json('outputs.json', outputs)
            cidr_map = self.write_json('cidrs.json', cidrs)
            self.assertRefused(words, '--net-cidr-map', cidr_map,
                               source=('--stack-outputs', source))

    def test_inventory_and_net_vip_map_entry_points(self):
        # the same checks when the deployment comes as config-download's
        # saved inventory, with an operator's net_vip_map
        for case in ('zone id with an injected key', 'IPv4-mapped IPv6',
                     'network name ending in a newline'):
            change, words = HOSTILE[case]
            outputs, cidrs = stock_outputs(), synth.net_cidr_map()
            change(outputs, cidrs)
            inventory = os.path.join(self.work, 'inventory.yaml')
            with sources.quiet():
                sources.tripleo_inventory(outputs).write_static_inventory(
                    inventory)
            vips = self.write_json('vips.json', outputs['VipMap'])
            self.assertRefused(words, '--net-vip-map', vips,
                               source=('--inventory', inventory))
            os.unlink(inventory)
            os.unlink(vips)
        outputs = stock_outputs()
        vip_map = dict(outputs['VipMap'])
        vip_map['ovn_dbs\n'] = vip_map.pop('ovn_dbs')
        vips = self.write_json('vips.json', vip_map)
        self.assertRefused(['VIP name', 'ovn_dbs'], '--net-vip-map', vips)

    def test_option_names(self):
        for args, words in (
                (('--skip-networks', 'tenant,bogus\nname'),
                 ['skip_networks', 'not a valid network name']),
                (('--vip-networks', 'redis:internal_api\n'),
                 ['vip_networks', 'not a valid network name']),
                (('--vip-networks', 'red is:internal_api'),
                 ['vip_networks', 'not a valid VIP name'])):
            self.assertRefused(words, *args)

    def test_the_canonical_forms_still_pass(self):
        # the same checks let the forms a deploy really gives through
        outputs, cidrs = stock_outputs(), synth.net_cidr_map()
        outputs['RoleNetIpMap']['Compute']['internal_api'][0] = (
            ' 172.16.2.99 ')
        source = self.write_json('outputs.json', outputs)
        cidr_map = self.write_json('cidrs.json', cidrs)
        self.assertOk(self.render('--net-cidr-map', cidr_map,
                                  source=('--stack-outputs', source)))
        conf = self.read(os.path.join(
            self.work, 'out', 'overcloud-novacompute-0', 'etc', 'ipsec.d',
            'tripleo-internal_api.conf'))
        self.assertIn('left=172.16.2.99\n', conf)


BOMB = '\n'.join(['a: &a ["x","x","x","x","x","x","x","x","x"]'] + [
    '%s: &%s [%s]' % (chr(98 + i), chr(98 + i),
                      ','.join(['*%s' % chr(97 + i)] * 9))
    for i in range(8)]) + '\n'


class TestBadFiles(CliTestCase):
    """Every file the CLI reads, given what is not a file of its kind.

    One line naming the file, no traceback, nothing written, in 30 s and
    2 GiB: an alias bomb, text that is not UTF-8, a key given twice, a
    FIFO, a device, a directory.
    """

    def _file(self, kind, name):
        path = os.path.join(self.work, name)
        if kind == 'fifo':
            os.mkfifo(path)
        elif kind == 'directory':
            os.mkdir(path)
        elif kind == 'device':
            return '/dev/zero'
        else:
            with open(path, 'wb') as f:
                f.write({'bomb': BOMB.encode(),
                         'latin-1': 'r\xe9seau: [1]\n'.encode('latin-1'),
                         'twice': b'{"internal_api": ["172.16.2.0/24"],\n'
                                  b' "internal_api": ["10.0.0.0/8"]}\n'}[kind])
            os.chmod(path, 0o600)     # a key file must be, to be read
        return path

    def _refused(self, args, source, words):
        out = os.path.join(self.work, 'out')
        before = sorted(os.listdir(self.work))
        result = subprocess.run(
            [sys.executable, '-m', 'tripleo_ipsec.cli', 'render'] +
            list(source) + list(args) +
            ['--master-key-file', args[-1] if args and args[0] ==
             '--master-key-file' else self.key, '--out', out],
            cwd=TOP, env=_env(), capture_output=True, text=True, timeout=30,
            preexec_fn=_limited)
        line = self.assertOneErrorLine(result, words)
        self.assertFalse(os.path.lexists(out), line)
        self.assertEqual(before, sorted(os.listdir(self.work)), line)

    def test_every_input_file(self):
        yaml_kinds = {'bomb': 'expand', 'latin-1': 'not UTF-8',
                      'twice': 'given twice', 'fifo': 'not a regular file',
                      'directory': 'not a regular file',
                      'device': 'not a regular file'}
        stock = ('--stack-outputs', STOCK)
        checked = 0
        for option, kinds in (
                ('--stack-outputs', yaml_kinds),
                ('--inventory', yaml_kinds),
                ('--net-cidr-map', yaml_kinds),
                ('--net-vip-map', yaml_kinds),
                ('--config-file', {'fifo': 'not a regular file',
                                   'directory': 'not a regular file',
                                   'device': 'not a regular file'}),
                ('--master-key-file', {'fifo': 'not a regular file',
                                       'directory': 'not a regular file',
                                       'device': 'not a regular file',
                                       'latin-1': 'not base64'})):
            for kind, why in sorted(kinds.items()):
                name = '%s-%s' % (option.strip('-'), kind)
                path = self._file(kind, name)
                source = ((option, path) if option in (
                    '--stack-outputs', '--inventory') else stock)
                args = () if option in ('--stack-outputs', '--inventory') \
                    else (option, path)
                self._refused(args, source, [why, os.path.basename(path)])
                checked += 1
                if kind in ('fifo', 'directory'):
                    (os.rmdir if kind == 'directory' else os.unlink)(path)
                elif kind != 'device':
                    os.unlink(path)
        self.assertEqual(31, checked)

    def test_verify_refuses_what_is_not_a_manifest(self):
        fifo = os.path.join(self.work, 'fifo.json')
        os.mkfifo(fifo)
        cases = [(self.write('list.json', '[]'), 'not a mapping'),
                 (self.write('conns.json', '{"conns": 5}'),
                  'conns is not a mapping'),
                 (self.write('vip.json', '{"vips": {"internal_api": 3}}'),
                  "VIP 'internal_api'"),
                 (self.write('holders.json',
                             '{"vips": {"redis": {"holder": "a"}}}'),
                  "VIP 'redis'"),
                 (self.write('text.json', 'conn x'), 'not JSON'),
                 (fifo, 'not a regular file'),
                 (self.work, 'not a regular file'),
                 ('/dev/zero', 'not a regular file')]
        for path, why in cases:
            result = subprocess.run(
                [sys.executable, '-m', 'tripleo_ipsec.cli', 'verify',
                 '--manifest', path, '--ctlsocket',
                 os.path.join(self.work, 'no-pluto.ctl')],
                cwd=TOP, env=_env(), capture_output=True, text=True,
                timeout=30, preexec_fn=_limited)
            self.assertOneErrorLine(result, [why, path])

    def test_a_shared_node_is_no_bomb(self):
        # anchors and aliases as yaml.safe_dump writes them load as before
        cidrs = synth.net_cidr_map()
        shared = ['172.16.1.0/24']
        cidrs['storage'] = shared
        cidrs['storage_nfs'] = shared
        text = yaml.safe_dump(cidrs)
        self.assertIn('&', text)
        path = self.write('cidrs.yaml', text)
        self.assertOk(self.render('--net-cidr-map', path))


class TestBadInput(CliTestCase):

    # 1. duplicate addresses

    def test_duplicate_ip(self):
        outputs = stock_outputs()
        ips = outputs['RoleNetIpMap']
        taken = ips['Controller']['internal_api'][0]
        ips['Compute']['internal_api'][1] = taken
        path = self.write_json('dup.json', outputs)
        self.assertRefused(['duplicate', taken, 'internal_api'],
                           source=('--stack-outputs', path))

    # 2. skip list

    def test_unknown_skip_network(self):
        self.assertRefused(['skip_networks', 'bogus', 'not a network'],
                           '--skip-networks', 'tenant,bogus')

    # 3. net_cidr_map

    def _cidr_map(self, internal_api):
        cidrs = synth.net_cidr_map()
        cidrs['internal_api'] = internal_api
        return self.write_yaml('net-cidr-map.yaml', cidrs)

    def test_cidr_prefix_too_long(self):
        path = self._cidr_map(['172.16.2.0/33'])
        self.assertRefused(['172.16.2.0/33', 'internal_api', 'CIDR'],
                           '--net-cidr-map', path)

    def test_cidr_not_a_cidr(self):
        path = self._cidr_map('notacidr')
        self.assertRefused(['notacidr', 'internal_api', 'CIDR'],
                           '--net-cidr-map', path)

    # 4. addresses

    def test_bad_ip(self):
        outputs = stock_outputs()
        outputs['RoleNetIpMap']['Compute']['internal_api'][0] = '172.16.2.300'
        path = self.write_json('bad-ip.json', outputs)
        self.assertRefused(['172.16.2.300', 'not an IP address'],
                           source=('--stack-outputs', path))

    # 5. algorithms

    def test_bad_esp_algorithm(self):
        self.assertRefused(['ESP', 'aes_gcm999'], '--esp', 'aes_gcm999')

    def test_unknown_ike_algorithm(self):
        self.assertRefused(['IKE', "'foo'"], '--ike', 'foo-sha2_256-dh19')

    # 6. the master key

    def test_short_master_key(self):
        short = base64.b64encode(os.urandom(16)).decode('ascii')
        self.secrets.append(short)
        path = self.write('short.key', short + '\n', 0o600)
        self.assertRefused(['short.key', 'too short', '16 bytes'], key=path)

    def test_missing_master_key(self):
        path = os.path.join(self.work, 'missing.key')
        self.assertRefused(['missing.key', 'No such file'], key=path)
        self.assertFalse(os.path.lexists(path))

    def test_world_readable_master_key(self):
        os.chmod(self.key, 0o644)
        self.assertRefused(['master.key', '0644', 'chmod 0600'])
        self.assertEqual(0o644, stat.S_IMODE(os.stat(self.key).st_mode))

    def test_failed_render_creates_no_master_key(self):
        path = os.path.join(self.work, 'new.key')
        self.assertRefused(['bogus'], '--skip-networks', 'bogus',
                           '--create-master-key', key=path)
        self.assertFalse(os.path.lexists(path))

    # 7. missing outputs

    def test_missing_role_net_ip_map(self):
        outputs = stock_outputs()
        del outputs['RoleNetIpMap']
        path = self.write_json('no-ips.json', outputs)
        self.assertRefused(['RoleNetIpMap', 'missing'],
                           source=('--stack-outputs', path))

    def test_missing_server_id_data(self):
        # tripleo-common itself dies with UnboundLocalError on this
        outputs = stock_outputs()
        del outputs['ServerIdData']
        path = self.write_json('no-ids.json', synth.as_heat_list(outputs))
        line = self.assertRefused(['ServerIdData', 'missing'],
                                  source=('--stack-outputs', path))
        self.assertNotIn('UnboundLocalError', line)

    # 8. malformed files

    def test_invalid_json(self):
        text = json.dumps(synth.as_heat_list(stock_outputs()))
        path = self.write('cut.json', text[:len(text) // 2])
        self.assertRefused(['cut.json', 'not valid JSON or YAML'],
                           source=('--stack-outputs', path))

    def test_invalid_yaml(self):
        path = self.write('bad.yaml', 'RoleNetIpMap: {Controller: [1, 2}\n'
                                      '  - oops\n')
        self.assertRefused(['bad.yaml', 'not valid JSON or YAML'],
                           source=('--stack-outputs', path))

    def test_empty_file(self):
        path = self.write('empty.json', '')
        self.assertRefused(['empty.json', 'empty'],
                           source=('--stack-outputs', path))

    def test_json_list_of_strings(self):
        path = self.write_json('strings.json', ['RoleNetIpMap', 'VipMap'])
        self.assertRefused(['strings.json', 'output_key'],
                           source=('--stack-outputs', path))

    def test_file_does_not_exist(self):
        path = os.path.join(self.work, 'nowhere.json')
        self.assertRefused(['nowhere.json', 'No such file'],
                           source=('--stack-outputs', path))

    # 9. oslo.config files

    def test_bad_option_in_config_file(self):
        path = self.write('ipsec.conf', '[ipsec]\nfailure_policy = bogus\n')
        self.assertRefused(['failure_policy', 'private-or-clear'],
                           '--config-file', path)

    def test_bad_encapsulation_and_compress(self):
        for args, words in (
                (('--encapsulation', 'maybe'), ['encapsulation', 'maybe']),
                (('--compress', 'perhaps'), ['compress', 'true or false']),
                (('--config-file', self.write(
                    'encaps.conf', '[ipsec]\nencapsulation = always\n')),
                 ['encapsulation', 'auto, yes, no']),
                (('--config-file', self.write(
                    'compress.conf', '[ipsec]\ncompress = perhaps\n')),
                 ['compress', 'invalid value'])):
            self.assertRefused(words, *args)

    def test_bad_clear_exemptions(self):
        for value, words in (
                ('udp/500', ['udp/500', 'IKE itself']),
                ('tcp/22,udp/4500', ['udp/4500', 'IKE itself']),
                ('udp', ['\'udp\'', 'IKE itself']),
                ('esp', ['esp', 'PROTO[/PORT][@NET]']),
                ('tcp/22;reboot', ['tcp/22;reboot', 'PROTO[/PORT][@NET]']),
                ('tcp/0', ['tcp/0', '1-65535']),
                ('tcp/65536', ['tcp/65536', '1-65535']),
                ('icmp/3', ['icmp/3', 'whole']),
                ('TCP/22', ['TCP/22', 'PROTO[/PORT][@NET]']),
                ('tcp/22@tenant', ['tenant', 'not a protected network']),
                ('tcp/22@bogus', ['bogus', 'not a protected network'])):
            self.assertRefused(words, '--clear-exemptions', value)
        path = self.write('ex.conf', '[ipsec]\nclear_exemptions = '
                          'tcp/22, udp/500\n')
        self.assertRefused(['udp/500', 'IKE itself'], '--config-file', path)

    def test_bad_conn_budget(self):
        self.assertRefused(['conn budget', '>= 0'], '--conn-budget', '-1')
        path = self.write('budget.conf', '[ipsec]\nconn_budget = many\n')
        self.assertRefused(['conn_budget', 'invalid value'],
                           '--config-file', path)

    def test_bad_mtu_inputs(self):
        self.assertRefused(['mtu floor', '>= 0'], '--mtu-floor', '-5')
        path = self.write_yaml('mtu.yaml', {'internal_api': 'jumbo'})
        self.assertRefused(['net_mtu_map.internal_api', "'jumbo'",
                            'not an MTU'], '--net-mtu-map', path)
        path = self.write_yaml('mtu.yaml', {'internal_api': 1300,
                                            'storage': 1500})
        self.assertRefused(['internal_api', '1266', 'floor of 1290'],
                           '--net-mtu-map', path, '--mtu-floor', '1290')

    def test_an_exemption_needs_the_subnets(self):
        # the stock outputs come without net_cidr_map
        self.assertRefused(['internal_api', 'net_cidr_map'],
                           '--clear-exemptions', 'tcp/22')

    def test_key_given_as_config_file_is_not_echoed(self):
        # 48 bytes: base64 without '=' padding, which oslo.config would
        # quote back in its parse error
        secret = base64.b64encode(os.urandom(48)).decode()
        self.secrets.append(secret)
        path = self.write('k48', secret + '\n', 0o600)
        self.assertRefused(['k48', 'INI'], '--config-file', path)

    def test_server_ids_not_a_list(self):
        outputs = stock_outputs()
        outputs['ServerIdData']['server_ids']['Compute'] = 5
        path = self.write_json('sid.json', outputs)
        self.assertRefused(['ServerIdData.server_ids.Compute', 'list'],
                           source=('--stack-outputs', path))

    def test_host_in_two_roles(self):
        outputs = stock_outputs()
        names = outputs['RoleNetHostnameMap']
        names['Compute']['ctlplane'][0] = names['Controller']['ctlplane'][0]
        path = self.write_json('twice.json', outputs)
        self.assertRefused(['overcloud-controller-0', 'two roles'],
                           source=('--stack-outputs', path))

    def test_config_file_does_not_exist(self):
        path = os.path.join(self.work, 'nowhere.conf')
        self.assertRefused(['nowhere.conf'], '--config-file', path)

    # the output directory

    def test_foreign_output_directory_is_left_alone(self):
        out = os.path.join(self.work, 'out')
        os.mkdir(out)
        foreign = os.path.join(out, 'notes.txt')
        with open(foreign, 'w') as f:
            f.write('mine\n')
        before = sorted(os.listdir(self.work))
        result = self.render(out=out)
        self.assertOneErrorLine(result, ['out', 'not empty', 'refusing'])
        self.assertEqual(['notes.txt'], os.listdir(out))
        self.assertEqual('mine\n', self.read(foreign))
        self.assertEqual(before, sorted(os.listdir(self.work)))

    def test_failed_render_keeps_the_previous_output(self):
        out = os.path.join(self.work, 'out')
        self.assertOk(self.render(out=out))
        rendered = base.tree(out)
        before = sorted(os.listdir(self.work))
        result = self.render('--esp', 'aes_gcm999', out=out)
        self.assertOneErrorLine(result, ['aes_gcm999'])
        self.assertEqual(rendered, base.tree(out))
        self.assertEqual(before, sorted(os.listdir(self.work)))

    def test_usage_error_is_one_line(self):
        out = os.path.join(self.work, 'out')
        before = sorted(os.listdir(self.work))
        result = self.render('--key-epoch', 'abc', out=out)
        self.assertOneErrorLine(result, ['--key-epoch', 'abc'])
        self.assertFalse(os.path.lexists(out))
        self.assertEqual(before, sorted(os.listdir(self.work)))


class TestInventory(CliTestCase):

    def test_json(self):
        inv = json.loads(self.assertOk(run_cli(
            'inventory', '--stack-outputs', STOCK, '-f', 'json')))
        hostvars = inv['_meta']['hostvars']
        self.assertEqual(HOSTS, sorted(hostvars))
        self.assertEqual('172.16.2.10',
                         hostvars['overcloud-controller-0']['internal_api_ip'])
        self.assertEqual(['Controller'], inv['pacemaker']['children'])
        self.assertEqual([], inv['excluded_overcloud']['hosts'])

    def test_yaml(self):
        text = self.assertOk(run_cli(
            'inventory', '--stack-outputs', STOCK, '-f', 'yaml'))
        inv = yaml.safe_load(text)
        self.assertEqual(HOSTS, sorted(inv['_meta']['hostvars']))
        self.assertEqual(['Compute', 'Controller'],
                         sorted(inv['ipsec']['children']))

    def test_table(self):
        rows = table_rows(self.assertOk(run_cli(
            'inventory', '--stack-outputs', STOCK)))
        self.assertEqual(['host', 'networks'], rows[0])
        self.assertEqual(HOSTS, [r[0] for r in rows[1:]])
        self.assertIn('storage_mgmt', rows[1][1])
        self.assertNotIn('storage_mgmt', rows[-1][1])


class TestPlan(CliTestCase):

    def plan(self, *args):
        return json.loads(self.assertOk(run_cli('plan', *args)))

    def test_json_defaults(self):
        data = self.plan('--stack-outputs', STOCK, '-f', 'json')
        for key in ('hosts', 'vips', 'firewall_rules', 'networks'):
            self.assertIn(key, data)
        self.assertEqual(DEFAULT_NETWORKS, data['networks'])
        self.assertEqual(DEFAULT_OPTIONS, data['options'])
        self.assertEqual(HOSTS, sorted(data['hosts']))
        self.assertEqual(['internal_api', 'ovn_dbs', 'redis', 'storage',
                          'storage_mgmt'],
                         sorted(v['name'] for v in data['vips']))
        # no --net-cidr-map: no subnet to let IKE in from, so no rule
        # (never one open to any source)
        self.assertEqual({}, data['firewall_rules'])
        for host in data['hosts'].values():
            self.assertTrue(host['conns'])
            self.assertLessEqual(
                {c['network'] for c in host['conns']}, set(DEFAULT_NETWORKS))
        self.assertEqual(5, data['summary']['hosts'])

    def test_load_table_and_budget_warning(self):
        path = self.write_yaml('mtu.yaml', {'internal_api': 1500,
                                            'storage': 9000})
        rows = table_rows(self.assertOk(run_cli(
            'plan', '--stack-outputs', STOCK, '--net-mtu-map', path)))
        self.assertEqual(['host', 'role', 'conns', 'SAs (max)',
                          'xfrm states (max)', 'networks'], rows[0])
        self.assertEqual([['internal_api', '1500', 'ipv4', '1466', '1438'],
                          ['storage', '9000', 'ipv4', '8966', '8938'],
                          ['storage_mgmt', 'unknown', '-', '-', '-']],
                         rows[-3:])
        by_host = {r[0]: r for r in rows[1:6]}
        self.assertEqual(['33', '33', '66'],
                         by_host['overcloud-controller-0'][2:5])
        # past the budget: a warning per node on stderr, still exit 0
        for command in ('plan', 'render'):
            args = [command, '--stack-outputs', STOCK, '--conn-budget', '30']
            if command == 'render':
                args += ['--master-key-file', self.key, '--out',
                         os.path.join(self.work, 'out')]
            result = run_cli(*args)
            self.assertEqual(0, result.returncode, result.stderr)
            lines = result.stderr.splitlines()
            self.assertEqual(3, len(lines), result.stderr)
            for line in lines:
                self.assertRegex(line, r'^tripleo-ipsec: warning: overcloud-'
                                 r'controller-\d: 33 SAs at most \(33 '
                                 r'conns\), over the conn budget of 30 ')

    def test_firewall_rules_from_net_cidr_map(self):
        path = self.write_yaml('net-cidr-map.yaml', synth.net_cidr_map())
        rules = self.plan('--stack-outputs', STOCK, '--net-cidr-map', path,
                          '-f', 'json')['firewall_rules']
        self.assertEqual(
            ['100 ipsec ike internal_api 172.16.2.0/24',
             '100 ipsec ike storage 172.16.1.0/24',
             '100 ipsec ike storage_mgmt 172.16.3.0/24',
             '101 ipsec esp internal_api 172.16.2.0/24',
             '101 ipsec esp storage 172.16.1.0/24',
             '101 ipsec esp storage_mgmt 172.16.3.0/24'], sorted(rules))
        self.assertEqual({'proto': 'udp', 'dport': [500, 4500],
                          'source': '172.16.1.0/24', 'ipversion': 'ipv4'},
                         rules['100 ipsec ike storage 172.16.1.0/24'])

    def test_yaml_is_the_json(self):
        text = self.assertOk(run_cli('plan', '--stack-outputs', STOCK,
                                     '-f', 'yaml'))
        self.assertEqual(self.plan('--stack-outputs', STOCK, '-f', 'json'),
                         yaml.safe_load(text))

    def test_table(self):
        rows = table_rows(self.assertOk(run_cli(
            'plan', '--stack-outputs', STOCK, '-f', 'table')))
        self.assertEqual(['host', 'role', 'conns', 'SAs (max)',
                          'xfrm states (max)', 'networks'], rows[0])
        # then one row per network: its MTU unknown without network_data
        mtu = rows.index(['network', 'link MTU', 'family', 'inner MTU',
                          'ping -M do -s'])
        self.assertEqual([[n, 'unknown', '-', '-', '-']
                          for n in DEFAULT_NETWORKS], rows[mtu + 1:])
        rows = rows[:mtu]
        self.assertEqual(HOSTS, [r[0] for r in rows[1:]])
        self.assertEqual(['Controller'] * 3 + ['Compute'] * 2,
                         [r[1] for r in rows[1:]])
        self.assertEqual(', '.join(DEFAULT_NETWORKS), rows[1][5])
        self.assertEqual('internal_api, storage', rows[-1][5])
        for row in rows[1:]:
            self.assertGreater(int(row[2]), 0)

    def test_every_stack_output_shape_gives_the_same_plan(self):
        with open(STOCK) as f:
            heat_list = json.load(f)
        outputs = {o['output_key']: o['output_value'] for o in heat_list}
        self.assertEqual(stock_outputs()['RoleNetIpMap'],
                         outputs['RoleNetIpMap'])
        show_all_text = {k: json.dumps({'output_key': k, 'output_value': v,
                                        'description': 'synthesised'})
                         for k, v in outputs.items()}
        shapes = {
            'heat-list': STOCK,
            'plain': self.write_json('plain.json', outputs),
            'plain-yaml': self.write_yaml('plain.yaml', outputs),
            'output-show-all': self.write_json(
                'show-all.json', synth.as_output_show_all(outputs)),
            'output-show-all-text': self.write_json(
                'show-all-text.json', show_all_text),
            'stack-show': self.write_json(
                'stack-show.json', {'stack_name': 'overcloud',
                                    'outputs': heat_list}),
        }
        plans = {name: self.plan('--stack-outputs', path, '-f', 'json')
                 for name, path in shapes.items()}
        expected = plans.pop('heat-list')
        self.assertEqual(DEFAULT_NETWORKS, expected['networks'])
        for name, got in plans.items():
            self.assertEqual(expected, got, name)


class TestRender(CliTestCase):

    def setUp(self):
        super(TestRender, self).setUp()
        self.new_key = os.path.join(self.work, 'new.key')
        self.out = os.path.join(self.work, 'out')

    def render_new(self, fmt):
        """Render with a master key created on the way; stdout."""
        self.assertFalse(os.path.exists(self.new_key))
        stdout = self.assertOk(self.render(
            '--create-master-key', '-f', fmt, key=self.new_key,
            out=self.out))
        self.secrets.append(self.read(self.new_key).strip())
        self.assertNoSecret(stdout)
        return stdout

    def assertTree(self, out, hosts):
        self.assertEqual(sorted(hosts), sorted(
            h for h in os.listdir(out) if not h.startswith('.') and
            os.path.isdir(os.path.join(out, h))))
        with open(os.path.join(out, 'pacemaker.json')) as f:
            self.assertTrue(json.load(f)['commands'])
        for host in hosts:
            ipsec_d = os.path.join(out, host, 'etc', 'ipsec.d')
            names = os.listdir(ipsec_d)
            secrets = [n for n in names if n.endswith('.secrets')]
            self.assertTrue(secrets, host)
            for name in names:
                mode = stat.S_IMODE(os.stat(os.path.join(ipsec_d,
                                                         name)).st_mode)
                want = 0o600 if name.endswith('.secrets') else 0o644
                self.assertEqual(oct(want), oct(mode), name)
            self.assertTrue(os.path.isfile(os.path.join(
                out, host, 'etc', 'ipsec.d', 'tripleo-ipsec.manifest.json')))

    def assertNoLeftovers(self, *names):
        self.assertEqual(sorted(names), sorted(os.listdir(self.work)))

    def test_json_creates_the_key_0600(self):
        data = json.loads(self.render_new('json'))
        mode = stat.S_IMODE(os.stat(self.new_key).st_mode)
        self.assertEqual(oct(0o600), oct(mode))
        keys.load(self.new_key)
        self.assertEqual(self.out, data['out'])
        self.assertEqual(HOSTS, sorted(data['hosts']))
        self.assertTree(self.out, HOSTS)
        files = base.tree(self.out)
        for host, counts in data['hosts'].items():
            self.assertEqual(counts['files'], len(
                [p for p in files if p.startswith(host + os.sep)]), host)
            self.assertGreater(counts['conns'], 0)
        self.assertNoLeftovers('master.key', 'new.key', 'out')

    def test_yaml(self):
        data = yaml.safe_load(self.render_new('yaml'))
        self.assertEqual(HOSTS, sorted(data['hosts']))
        self.assertTree(self.out, HOSTS)

    def test_table(self):
        rows = table_rows(self.render_new('table'))
        self.assertEqual(['host', 'files', 'conns'], rows[0])
        self.assertEqual(HOSTS, [r[0] for r in rows[1:]])
        self.assertTree(self.out, HOSTS)

    def test_render_again_replaces_the_output(self):
        first = json.loads(self.render_new('json'))
        key_text = self.read(self.new_key)
        rendered = base.tree(self.out)
        # the key exists now: --create-master-key loads it, not replaces it
        second = json.loads(self.assertOk(self.render(
            '--create-master-key', '-f', 'json', key=self.new_key,
            out=self.out)))
        self.assertEqual(first, second)
        self.assertEqual(key_text, self.read(self.new_key))
        self.assertEqual(rendered, base.tree(self.out))
        self.assertTree(self.out, HOSTS)
        self.assertNoLeftovers('master.key', 'new.key', 'out')

    def test_render_again_with_other_options(self):
        self.render_new('json')
        rendered = base.tree(self.out)
        self.assertOk(self.render('--key-epoch', '1', key=self.new_key,
                                  out=self.out))
        again = base.tree(self.out)
        self.assertEqual(sorted(rendered), sorted(again))
        secrets = [p for p in again if p.endswith('.secrets')]
        self.assertTrue(secrets)
        for path in secrets:
            self.assertNotEqual(rendered[path], again[path], path)
        self.assertNoLeftovers('master.key', 'new.key', 'out')


class TestConfigFile(CliTestCase):

    CONF = ('[ipsec]\n'
            'skip_networks = tenant,external,ctlplane,storage_mgmt\n'
            'key_epoch = 3\n')

    def plan(self, *args):
        return json.loads(self.assertOk(run_cli(
            'plan', '--stack-outputs', STOCK, '-f', 'json', *args)))

    def test_options_from_the_file(self):
        conf = self.write('tripleo-ipsec.conf', self.CONF)
        data = self.plan('--config-file', conf)
        self.assertEqual(['internal_api', 'storage'], data['networks'])
        self.assertEqual(['tenant', 'external', 'ctlplane', 'storage_mgmt'],
                         data['options']['skip_networks'])
        self.assertEqual(3, data['options']['key_epoch'])
        self.assertEqual(dict(DEFAULT_OPTIONS, key_epoch=3,
                              skip_networks=data['options']['skip_networks']),
                         data['options'])
        for host in data['hosts'].values():
            self.assertNotIn('storage_mgmt',
                             {c['network'] for c in host['conns']})

    def test_command_line_overrides_the_file(self):
        conf = self.write('tripleo-ipsec.conf', self.CONF)
        data = self.plan('--config-file', conf, '--key-epoch', '7')
        self.assertEqual(7, data['options']['key_epoch'])
        self.assertEqual(['internal_api', 'storage'], data['networks'])
        data = self.plan('--config-file', conf,
                         '--skip-networks', 'tenant,external,ctlplane')
        self.assertEqual(3, data['options']['key_epoch'])
        self.assertEqual(DEFAULT_NETWORKS, data['networks'])

    def test_later_file_wins(self):
        first = self.write('first.conf', self.CONF)
        second = self.write('second.conf', '[ipsec]\nkey_epoch = 4\n'
                                           'failure_policy = '
                                           'private-or-clear\n')
        data = self.plan('--config-file', first, '--config-file', second)
        self.assertEqual(4, data['options']['key_epoch'])
        self.assertEqual('private-or-clear',
                         data['options']['failure_policy'])
        self.assertEqual(['internal_api', 'storage'], data['networks'])

    def test_render_uses_the_file(self):
        conf = self.write('tripleo-ipsec.conf', self.CONF)
        out = os.path.join(self.work, 'out')
        self.assertOk(self.render('--config-file', conf, out=out))
        manifest = base.manifest(out, 'overcloud-controller-0')
        self.assertEqual(3, manifest['key_epoch'])
        ipsec_d = os.path.join(out, 'overcloud-controller-0', 'etc',
                               'ipsec.d')
        self.assertNotIn('tripleo-storage_mgmt.conf', os.listdir(ipsec_d))
        self.assertIn('tripleo-storage.conf', os.listdir(ipsec_d))


class TestConfigGenerator(base.TestCase):

    def test_lists_the_ipsec_options(self):
        result = subprocess.run(
            [os.path.join(BIN, 'oslo-config-generator'),
             '--namespace', 'tripleo_ipsec'],
            cwd=TOP, env=_env(), capture_output=True, text=True, timeout=120)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('\n[ipsec]\n', result.stdout)
        section = result.stdout.split('\n[ipsec]\n', 1)[1]
        for opt in ('skip_networks', 'ike', 'esp', 'failure_policy',
                    'key_epoch', 'vip_networks'):
            self.assertIsNotNone(
                re.search(r'^#%s =( |$)' % opt, section, re.M), opt)
        self.assertIn('#skip_networks = tenant,external,ctlplane', section)
        self.assertIn('#failure_policy = private\n', section)
