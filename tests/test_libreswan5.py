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

"""Rendered bundles against the real libreswan 5.2, and the node's choice
of syntax against the real 4.10 and 5.2.

Libreswan 5.2 is Debian 13's, in the trixie chroot tools/install builds
(``$TRIPLEO_IPSEC_TRIXIE``, default ``.chroot-trixie``); the host's is
4.10.  Every command runs in the chroot through ``unshare``: a private
mount namespace gives it a /proc and the host's /tmp (or $TMPDIR) at the
same path, so the files the tests (and the node code) write there are
where libreswan looks, and the mounts die with the command (or with
pluto).  Pluto runs in a network namespace with only ``lo``, as in
test_libreswan: the kernel has no ESP, and loading the conns is the check.

The checks are strict: ``addconn --checkconfig`` must say nothing, and
adding the conns must print nothing but each conn being added.  5.2 takes
``ikev2=insist`` (4.x's spelling) with a warning for every conn, so the
bundle only passes once the node has adapted it (libreswan.adapt_conf);
TestTheCheckCanFail shows the check failing on what it must catch.
"""

import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid

from tests import base
from tests import pluto
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import plan

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIXIE = (os.environ.get('TRIPLEO_IPSEC_TRIXIE') or
          os.path.join(TOP, '.chroot-trixie'))
PLUTO = '/usr/libexec/ipsec/pluto'
FIXTURES = sorted(base.FIXTURE_FILES)

# What 5.2 may say when it adds our conns: each conn added; a node's conn
# towards a VIP it holds has both ends here, and stays unoriented
_ADDED = re.compile(r'^"([^"]+)": added (unoriented )?IKEv2 connection')
_BOTH_LOCAL = re.compile(r'^"([^"]+)": connection matches both (?:left|right) '
                         r'\S+ \S+ and (?:left|right) \S+ \S+$')
# the argv prefix's script: $0 is the chroot, $1 the temporary directory
# (/tmp, or $TMPDIR) that it shares with the host, at the same path
_ENTER = ('tmp=$1; shift; mkdir -p "$0$tmp" && '
          'mount --rbind "$tmp" "$0$tmp" && mount -t proc proc "$0/proc" && '
          'exec chroot "$0" "$@"')


def available():
    """Why libreswan 5 cannot run here, or None when it can."""
    if not os.path.exists(os.path.join(TRIXIE, PLUTO[1:])):
        return ('no libreswan 5 chroot at %s (tools/install builds it)'
                % TRIXIE)
    if os.geteuid() != 0:
        return 'needs root (chroot, mounts, network namespaces)'
    return None


def enter(netns=None):
    """The argv prefix that runs a command in the chroot (in ``netns``)."""
    prefix = ['ip', 'netns', 'exec', netns] if netns else []
    return prefix + ['unshare', '--mount', '--propagation', 'private', '--',
                     'sh', '-c', _ENTER, TRIXIE, tempfile.gettempdir()]


def ipsec5(*args):
    return pluto.run(enter() + ['ipsec'] + list(args))


def here(the_plan, topo, host):
    """A node's addresses and the conns that cannot orient there.

    Its own addresses, and those of the VIPs it may hold (it has their
    holder conns), as if it held them all: then its conns towards those
    VIPs have both ends here.
    """
    conns = the_plan.hosts[host].conns
    vips = {c.left for c in conns if c.kind == plan.VIP_HOLDER}
    addresses = {a for h in topo.hosts if h.name == host
                 for a in h.addresses.values()}
    return (sorted(addresses | vips),
            {c.name for c in conns
             if c.kind == plan.VIP_PEER and c.right in vips})


def top_config(out, host, dest):
    """An ipsec.conf including the host's conns, as /etc/ipsec.conf does."""
    path = os.path.join(dest, '%s-ipsec.conf' % host)
    with open(path, 'w') as f:
        f.write('config setup\n\ninclude %s/%s/etc/ipsec.d/*.conf\n'
                % (out, host))
    return path


def adapt_tree(out, lw):
    """Adapt every rendered .conf below ``out`` in place, as the node does.

    Returns how many lines changed.
    """
    changed = 0
    for dirpath, _, filenames in os.walk(out):
        for name in filenames:
            if not name.endswith('.conf'):
                continue
            path = os.path.join(dirpath, name)
            with open(path) as f:
                text = f.read()
            adapted = lw.adapt(text)
            changed += sum(a != b for a, b in zip(
                text.split('\n'), adapted.split('\n')))
            with open(path, 'w') as f:
                f.write(adapted)
    return changed


def load_problems(result, conns, both_local):
    """What is wrong in an addconn run that should add ``conns``.

    Every line must be a conn being added, or the orientation note of a
    conn whose both ends are here (``both_local``); each conn added once,
    the unoriented ones exactly ``both_local``.  Returns the list of
    problems, empty when none.
    """
    problems = []
    if result.returncode:
        problems.append('addconn rc %d' % result.returncode)
    added, unoriented = [], set()
    for line in result.stdout.splitlines() + result.stderr.splitlines():
        match = _ADDED.match(line)
        if match:
            added.append(match.group(1))
            if match.group(2):
                unoriented.add(match.group(1))
            continue
        match = _BOTH_LOCAL.match(line)
        if match and match.group(1) in both_local:
            continue
        problems.append(line)
    if sorted(added) != sorted(conns):
        problems.append('added %s, wanted %s' % (sorted(added),
                                                 sorted(conns)))
    if unoriented != set(both_local):
        problems.append('unoriented %s, wanted %s' % (
            sorted(unoriented), sorted(both_local)))
    return problems


class Pluto5(object):
    """A real 5.2 pluto in the chroot, in a scratch network namespace."""

    def __init__(self, workdir, addresses, secrets_glob=None):
        self.netns = 'tipsec5-%s' % uuid.uuid4().hex[:10]
        self.dir = os.path.join(workdir, self.netns)
        self.nss = os.path.join(self.dir, 'nss')
        self.rundir = os.path.join(self.dir, 'run')
        self.ctl = os.path.join(self.rundir, 'pluto.ctl')
        self.log = os.path.join(self.dir, 'pluto.log')
        self.secrets = os.path.join(self.dir, 'ipsec.secrets')
        self.empty = os.path.join(self.dir, 'empty.conf')
        self._started = False
        os.makedirs(self.nss)
        os.makedirs(self.rundir)
        with open(self.empty, 'w') as f:
            f.write('config setup\n')
        with open(self.secrets, 'w') as f:
            if secrets_glob:
                f.write('include %s\n' % secrets_glob)
        self._check(enter() + ['ipsec', 'initnss', '--nssdir', self.nss])
        self._check(['ip', 'netns', 'add', self.netns])
        self._started = True
        try:
            self._check(['ip', '-n', self.netns, 'link', 'set', 'lo', 'up'])
            for address in addresses:
                self.add_address(address, 'lo')
        except BaseException:
            self.stop()
            raise
        self.lw = libreswan.Libreswan(self.ctl, 60, tuple(
            enter(self.netns) + ['ipsec']))

    def add_address(self, address, dev):
        extra = ['nodad'] if ':' in address else []
        self._check(['ip', '-n', self.netns, 'addr', 'add',
                     address + ('/64' if ':' in address else '/24'),
                     'dev', dev] + extra)

    def start(self):
        self._check(enter(self.netns) + [
            PLUTO, '--config', self.empty, '--nssdir', self.nss,
            '--rundir', self.rundir, '--secretsfile', self.secrets,
            '--logfile', self.log])
        deadline = time.monotonic() + 20
        while not os.path.exists(self.ctl):
            if time.monotonic() > deadline:
                raise RuntimeError('pluto 5 did not start: %s'
                                   % self.log_text())
            time.sleep(0.05)
        # pluto scans the interfaces after it opens its socket: wait for a
        # scan, or a conn added meanwhile orients against half of them
        self._check(enter(self.netns) + [
            'ipsec', 'whack', '--ctlsocket', self.ctl, '--listen'])
        return self

    @staticmethod
    def _check(args):
        result = pluto.run(args)
        if result.returncode:
            raise RuntimeError('%s: rc %d: %s' % (' '.join(args[-6:]),
                                                  result.returncode,
                                                  result.stderr.strip()))
        return result

    def addconn(self, config, names):
        return pluto.run(enter(self.netns) + [
            'ipsec', 'addconn', '--ctlsocket', self.ctl, '--config',
            config] + list(names))

    def whack(self, *args):
        return pluto.run(enter(self.netns) + [
            'ipsec', 'whack', '--ctlsocket', self.ctl] + list(args))

    def log_text(self):
        if not os.path.exists(self.log):
            return ''
        with open(self.log) as f:
            return f.read()

    def stop(self):
        if not self._started:
            return
        self._started = False
        if os.path.exists(self.ctl):
            self.whack('--shutdown')
        for pid in pluto.run(['ip', 'netns', 'pids',
                              self.netns]).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        pluto.run(['ip', 'netns', 'del', self.netns], check=True)


class Libreswan5TestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        why = available()
        if why:
            self.skipTest(why)

    def pluto5(self, addresses, secrets_glob=None):
        scratch = Pluto5(self.tempdir(), addresses, secrets_glob)
        self.addCleanup(scratch.stop)
        return scratch.start()

    def render5(self, the_plan, key=None):
        """Render, then adapt to the chroot's libreswan as the node does."""
        out, key = self.render(the_plan, key)
        lw = libreswan.Libreswan(command=tuple(enter() + ['ipsec']))
        self.assertEqual(5, lw.version[0])
        adapt_tree(out, lw)
        return out, key


class TestAdaptConf(base.TestCase):
    """The syntax table alone: no libreswan needed."""

    def test_adapting_a_render_round_trips(self):
        topo = base.fixture_topology('stock')
        tree4 = base.read_tree(self.render(base.make_plan(topo))[0])
        confs = [p for p in tree4 if p.endswith('.conf')]
        self.assertTrue(confs)
        for path in confs:
            five_text = libreswan.adapt_conf(tree4[path], 5)
            # one line per conn differs: its keyexchange
            self.assertEqual(
                tree4[path].count('ikev2=insist'),
                sum(a != b for a, b in zip(tree4[path].splitlines(),
                                           five_text.splitlines())))
            self.assertNotIn('ikev2=insist', five_text)
            self.assertEqual(tree4[path], libreswan.adapt_conf(five_text, 4))
            for text in (tree4[path], five_text):
                for major in (4, 5):
                    once = libreswan.adapt_conf(text, major)
                    self.assertEqual(once, libreswan.adapt_conf(once, major))
        # what is not a conn's keyexchange line stays as it is
        self.assertEqual('# ikev2=insist\nconn x\n\tikev2=insisting\n',
                         libreswan.adapt_conf(
                             '# ikev2=insist\nconn x\n\tikev2=insisting\n',
                             5))
        # 3.x takes 4.x's syntax, 6.x 5.x's until tested otherwise
        self.assertEqual(libreswan.SYNTAX[4], libreswan.syntax(3))
        self.assertEqual(libreswan.SYNTAX[5], libreswan.syntax(6))

    def test_every_fixture_is_checked_and_loaded(self):
        for cls in (TestCheckconfig5, TestPluto5Loads):
            self.assertEqual([], [f for f in FIXTURES
                                  if not hasattr(cls, 'test_' + f)],
                             cls.__name__)


class TestVersion(Libreswan5TestCase):
    """One detection: ``Libreswan.version`` asks ``ipsec --version``."""

    def test_the_chroot_is_5_and_the_host_4(self):
        if not shutil.which('ipsec'):
            self.skipTest('libreswan is not installed (tools/install)')
        five = libreswan.Libreswan(command=tuple(enter() + ['ipsec']))
        self.assertEqual((5, 2), five.version)
        self.assertEqual((4, 10), libreswan.Libreswan().version)

    def test_5_render_adapted_on_the_4_host_passes_its_checkconfig(self):
        if not shutil.which('ipsec'):
            self.skipTest('libreswan is not installed (tools/install)')
        the_plan = base.make_plan(base.fixture_topology('stock'))
        out, _ = self.render(the_plan)
        # the bundle in 5.x syntax, as a 5.x node installs it
        for dirpath, _, filenames in os.walk(out):
            for name in filenames:
                if name.endswith('.conf'):
                    path = os.path.join(dirpath, name)
                    with open(path) as f:
                        text = libreswan.adapt_conf(f.read(), 5)
                    with open(path, 'w') as f:
                        f.write(text)
        tmp = self.tempdir()
        host = sorted(the_plan.hosts)[0]
        conf = top_config(out, host, tmp)
        refused = pluto.run(['ipsec', 'addconn', '--config', conf,
                             '--checkconfig'])
        self.assertNotEqual(0, refused.returncode)
        self.assertIn('keyexchange, invalid value: ikev2', refused.stderr)
        self.assertGreater(adapt_tree(out, libreswan.Libreswan()), 0)
        for host in the_plan.hosts:
            conf = top_config(out, host, tmp)
            result = pluto.run(['ipsec', 'addconn', '--config', conf,
                                '--checkconfig'])
            self.assertEqual((0, ''), (result.returncode,
                                       result.stdout + result.stderr), host)


class TestCheckconfig5(Libreswan5TestCase):
    """Every host of every fixture passes 5.2's ``addconn --checkconfig``.

    It must say nothing, and list what the manifest says.
    """

    def _check(self, fixture, **opts):
        the_plan = base.make_plan(base.fixture_topology(fixture), **opts)
        out, _ = self.render5(the_plan)
        tmp = self.tempdir()
        for host in the_plan.hosts:
            conf = top_config(out, host, tmp)
            result = ipsec5('addconn', '--config', conf, '--checkconfig')
            self.assertEqual((0, ''), (result.returncode,
                                       result.stdout + result.stderr),
                             '%s/%s' % (fixture, host))
            listed = set(ipsec5('addconn', '--config', conf,
                                '--listall').stdout.split())
            ignored = set(ipsec5('addconn', '--config', conf,
                                 '--listignore').stdout.split())
            manifest = base.manifest(out, host)
            shared = {n for n in listed if n.startswith('tripleo-defaults-')}
            self.assertTrue(shared)
            self.assertEqual(set(manifest['conns']), listed - shared)
            holders = libreswan.holder_conns(manifest)
            self.assertEqual(shared | holders, ignored)

    def test_stock(self):
        self._check('stock')

    def test_composable(self):
        self._check('composable')

    def test_spine_leaf(self):
        self._check('spine_leaf')

    def test_dual_stack(self):
        self._check('dual_stack')

    def test_excluded(self):
        self._check('excluded')

    def test_other_proposals_and_policy(self):
        self._check('stock', ike='chacha20_poly1305-sha2_512-dh31',
                    esp='aes_gcm128,chacha20_poly1305',
                    failure_policy='private-or-clear')

    def test_encapsulation_and_compress(self):
        for encapsulation in ('yes', 'no'):
            self._check('stock', encapsulation=encapsulation, compress=True)


class TestPluto5Loads(Libreswan5TestCase):
    """Every host's conns load into a real 5.2 pluto, with their secrets."""

    def _load(self, fixture):
        topo = base.fixture_topology(fixture)
        the_plan = base.make_plan(topo)
        out, _ = self.render5(the_plan)
        tmp = self.tempdir()
        loaded = 0
        for host in topo.hosts:
            if host.name not in the_plan.hosts:
                continue
            manifest = base.manifest(out, host.name)
            conns = sorted(manifest['conns'])
            addresses, both_local = here(the_plan, topo, host.name)
            scratch = self.pluto5(
                addresses, '%s/%s/etc/ipsec.d/*.secrets' % (out, host.name))
            result = scratch.addconn(top_config(out, host.name, tmp), conns)
            self.assertEqual([], load_problems(result, conns, both_local),
                             '%s/%s' % (fixture, host.name))
            log = scratch.log_text()
            self.assertNotIn('failed to add', log)
            self.assertNotIn('has been replaced by', log)
            # pluto lists every conn (parsed as the node parses it)
            status = libreswan.parse_status(scratch.whack('--status').stdout)
            self.assertEqual(set(conns), {n for n in status
                                          if n.startswith('tripleo-')})
            for name in conns:
                self.assertGreater(status[name].serial, 0, name)
                self.assertEqual('unoriented' if name in both_local
                                 else 'unrouted', status[name].routing)
            # every conn's secret parsed: pluto reads every file, saying
            # nothing else, and lists a PSK for each pair
            reread = scratch.whack('--rereadsecrets')
            self.assertEqual(0, reread.returncode, reread.stderr)
            lines = (reread.stdout + reread.stderr).splitlines()
            self.assertEqual('forgetting secrets', lines[0])
            read = [re.match(r'loading secrets from "(.+)"$', line)
                    for line in lines[1:]]
            self.assertTrue(all(read), lines)
            self.assertEqual(
                sorted([scratch.secrets] + [
                    os.path.join(out, host.name, p[1:])
                    for p in manifest['files'] if p.endswith('.secrets')]),
                sorted(m.group(1) for m in read))
            listed = re.findall(r'PSK (\S+) (\S+)',
                                scratch.whack('--listpsks').stdout)
            wanted = {frozenset((c.left, c.right))
                      for c in the_plan.hosts[host.name].conns}
            self.assertEqual(wanted, {frozenset(p) for p in listed})
            self.assertEqual(len(wanted), len(listed))
            loaded += len(conns)
            scratch.stop()
        self.assertGreater(loaded, 0)

    def test_stock(self):
        self._load('stock')

    def test_composable(self):
        self._load('composable')

    def test_spine_leaf(self):
        self._load('spine_leaf')

    def test_dual_stack(self):
        self._load('dual_stack')

    def test_excluded(self):
        self._load('excluded')


class TestTheCheckCanFail(Libreswan5TestCase):
    """The checks above catch what 5.2 only warns about."""

    def test_unadapted_4_syntax_fails_the_load_check(self):
        topo = base.fixture_topology('stock')
        the_plan = base.make_plan(topo)
        out, _ = self.render(the_plan)      # ikev2=insist, not adapted
        host = sorted(the_plan.hosts)[0]
        manifest = base.manifest(out, host)
        conns = sorted(manifest['conns'])
        addresses, both_local = here(the_plan, topo, host)
        scratch = self.pluto5(addresses)
        result = scratch.addconn(top_config(out, host, self.tempdir()),
                                 conns)
        self.assertEqual(0, result.returncode)      # 5.2 takes it ...
        problems = load_problems(result, conns, both_local)
        # ... saying so for every conn: the check fails on each
        self.assertEqual(['"%s": ikev2=yes has been replaced by '
                          'keyexchange=ikev2' % n for n in conns],
                         problems)

    def test_a_4_only_keyword_fails_checkconfig(self):
        tmp = self.tempdir()
        conf = os.path.join(tmp, 'ipsec.conf')
        with open(conf, 'w') as f:
            f.write('config setup\n\nconn t\n\tauthby=secret\n'
                    '\tkeyexchange=ikev2\n\tdpdaction=restart\n'
                    '\tleft=192.0.2.1\n\tright=192.0.2.2\n\tauto=add\n')
        result = ipsec5('addconn', '--config', conf, '--checkconfig')
        # rc 0, but not silent: the check above wants both
        self.assertEqual(0, result.returncode)
        self.assertIn('obsolete keyword ignored: dpdaction=restart',
                      result.stdout + result.stderr)


class TestApplyOn5(Libreswan5TestCase):
    """The role's apply module on a node with 5.2.

    The bundle (rendered for 4.x) is written and loaded in 5.x syntax, and
    a rerun changes nothing.
    """

    class Module(object):
        check_mode = False
        # nothing to initiate with: TestStatusOn5 initiates, as lw does
        params = {'vips': True, 'initiate': False}

        def warn(self, message):
            # every conn of the bundle loads and routes on 5.2
            raise AssertionError(message)

    def _apply(self):
        # the module imports the node code as Ansible ships it: the same
        # file, under module_utils' name
        sys.modules.setdefault(
            'ansible.module_utils.tripleo_ipsec_libreswan', libreswan)
        sys.modules.setdefault(
            'ansible.module_utils.tripleo_ipsec_names', names)
        spec = importlib.util.spec_from_file_location(
            'tripleo_ipsec_apply', os.path.join(
                TOP, 'ansible', 'roles', 'tripleo_ipsec', 'library',
                'tripleo_ipsec_apply.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def test_first_run_loads_5_syntax_and_rerun_changes_nothing(self):
        apply = self._apply()
        topo = base.fixture_topology('stock')
        the_plan = base.make_plan(topo)
        out, _ = self.render(the_plan)
        host = sorted(the_plan.hosts)[0]
        bundle = os.path.join(out, host)
        files = {}
        for path, (mode, data) in base.tree(bundle).items():
            files[path] = {'mode': '%04o' % mode, 'content': data.decode()}
        manifest_path = [p for p in files if p.endswith('.manifest.json')]
        root = self.tempdir()
        scratch = self.pluto5(
            sorted(a for h in topo.hosts if h.name == host
                   for a in h.addresses.values()),
            '%s/etc/ipsec.d/*.secrets' % root)
        lw = scratch.lw
        self.assertEqual(5, lw.version[0])
        changed, first = apply.present(self.Module(), lw, root, files,
                                       manifest_path[0])
        self.assertTrue(changed)
        manifest = json.loads(files[manifest_path[0]]['content'])
        holders = libreswan.holder_conns(manifest)
        wanted = set(manifest['conns']) - holders
        self.assertEqual(sorted(wanted), first['added'])
        status = lw.status()
        self.assertEqual(wanted, {n for n in status
                                  if n.startswith('tripleo-')})
        # routed on demand (traps in place), none established (no ESP)
        self.assertEqual({'routed-ondemand'},
                         {status[n].routing for n in wanted})
        # the addresses 5.2 listens on, as the apply module reads them
        self.assertEqual(
            {str(ipaddress.ip_address(a)) for h in topo.hosts
             if h.name == host for a in h.addresses.values()},
            libreswan.parse_interfaces(lw.whack('--status').stdout) -
            {'127.0.0.1', '::1'})
        for rel in files:
            if rel.endswith('.conf'):
                with open(os.path.join(root, rel)) as f:
                    text = f.read()
                self.assertIn('\tkeyexchange=ikev2\n', text)
                self.assertNotIn('ikev2=insist', text)
        self.assertNotIn('has been replaced by', scratch.log_text())
        # the kernel's safety net, below every policy 5.2 installs
        self.assertEqual(libreswan.net_wanted(manifest, wanted), lw.net())
        one = [manifest['net'][n] for n in sorted(wanted)
               if ':' not in manifest['net'][n][0]][0]
        out = lw.ip('xfrm', 'policy', 'list', 'src', one[0] + '/32',
                    'dst', one[1] + '/32', 'dir', 'out').stdout
        priorities = sorted(int(p) for p in re.findall(r' priority (\d+) ',
                                                       out))
        self.assertEqual(2, len(priorities), out)
        self.assertLess(priorities[0], names.NET_PRIORITY)
        self.assertEqual(names.NET_PRIORITY, priorities[1])
        serials = {n: c.serial for n, c in status.items()}
        changed, again = apply.present(self.Module(), lw, root, files,
                                       manifest_path[0])
        self.assertEqual((False, []), (changed, again['written'] +
                                       again['added'] + again['replaced'] +
                                       again['deleted']))
        self.assertEqual(serials, {n: c.serial
                                   for n, c in lw.status().items()})


class TestStatusOn5(Libreswan5TestCase):
    """What the node reads from 5.2's ``whack --status`` with an IKE SA.

    Two 5.2 plutos on a veth pair (no ESP here: no Child SA).
    """

    def test_established_ike_sa_and_serials(self):
        topo = base.fixture_topology('stock')
        the_plan = base.make_plan(topo)
        out, _ = self.render5(the_plan)
        a, b = 'overcloud-controller-0', 'overcloud-controller-1'
        conn = [c for c in the_plan.hosts[a].conns
                if c.kind == plan.HOST and c.network == 'internal_api' and
                b in c.name][0]
        tmp = self.tempdir()
        ends = {}
        for host in (a, b):
            ends[host] = self.pluto5(
                [], '%s/%s/etc/ipsec.d/*.secrets' % (out, host))
        # one link between the two namespaces, each end with its address
        dev_a, dev_b = 'v5a%s' % uuid.uuid4().hex[:6], 'v5b%s' % (
            uuid.uuid4().hex[:6])
        pluto.run(['ip', 'link', 'add', dev_a, 'netns', ends[a].netns,
                   'type', 'veth', 'peer', 'name', dev_b, 'netns',
                   ends[b].netns], check=True)
        for host, dev, address in ((a, dev_a, conn.left),
                                   (b, dev_b, conn.right)):
            ends[host].add_address(address, dev)
            pluto.run(['ip', '-n', ends[host].netns, 'link', 'set', dev,
                       'up'], check=True)
            ends[host].whack('--listen')
            result = ends[host].addconn(top_config(out, host, tmp),
                                        [conn.name])
            self.assertEqual([], load_problems(result, [conn.name], ()))
        ends[a].lw.initiate(conn.name)
        deadline = time.monotonic() + 30
        while True:
            status = {h: e.lw.status()[conn.name] for h, e in ends.items()}
            if all(c.ike_sa for c in status.values()):
                break
            self.assertLess(time.monotonic(), deadline,
                            ends[a].whack('--status').stdout)
            time.sleep(0.2)
        for host, c in status.items():
            self.assertGreater(c.serial, 0, host)
            self.assertEqual(0, c.ipsec_sa, host)
            self.assertFalse(c.established)
        report = libreswan.verify(base.manifest(out, a),
                                  ends[a].lw.status())
        self.assertIn(conn.name, report['missing'])
