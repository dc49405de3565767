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

"""ocf:tripleo-ipsec:vip against a real pluto (libreswan 4.10, the host's)
in a scratch namespace, with resource-agents' own ocf-tester; what it reads
of tripleo-ipsec's manifest, for every host of every fixture.

tests/test_ocf5.py runs the same actions against libreswan 5.2."""

import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree

from testtools import content

from tests import base
from tests import pluto
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import render
from tripleo_ipsec import sources
from tripleo_ipsec_lab import synth

AGENT = os.path.join(base.os.path.dirname(base.FIXTURES), '..', 'ansible',
                     'roles', 'tripleo_ipsec', 'files', 'ocf', 'vip')
AGENT = os.path.realpath(AGENT)
HOST = 'overcloud-controller-0'
OCF_ROOT = '/usr/lib/ocf'
OCF_ERR_INSTALLED, OCF_ERR_CONFIGURED, OCF_NOT_RUNNING = 5, 6, 7


def ocf_unavailable():
    if not os.path.isdir(os.path.join(OCF_ROOT, 'lib', 'heartbeat')):
        return 'resource-agents is not installed'
    return None


class TestAgentFile(base.TestCase):

    def test_shellcheck(self):
        if not shutil.which('shellcheck'):
            self.skipTest('shellcheck is not installed '
                          '(apt-get install shellcheck)')
        result = pluto.run(['shellcheck', AGENT])
        self.assertEqual(0, result.returncode, result.stdout)

    def meta_data(self, **env):
        if ocf_unavailable():
            self.skipTest(ocf_unavailable())
        meta = pluto.run([AGENT, 'meta-data'],
                         env=dict(os.environ, OCF_ROOT=OCF_ROOT, **env))
        self.assertEqual(0, meta.returncode, meta.stderr)
        return meta.stdout

    def test_meta_data_is_valid(self):
        if not shutil.which('xmllint'):
            self.skipTest('xmllint is not installed '
                          '(apt-get install libxml2-utils)')
        meta = self.meta_data()
        lint = subprocess.run(['xmllint', '--noout', '-'], input=meta,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, lint.returncode, lint.stderr)
        self.assertIn('<parameter name="vip_name" unique="1" required="1">',
                      meta)

    def test_defaults_are_the_names(self):
        # tools/generate.py writes them from names, once; meta-data says
        # them, whatever the parameters are
        meta = self.meta_data(OCF_RESKEY_manifest='/x',
                              OCF_RESKEY_ctlsocket='/y')
        defaults = {p.get('name'): p.find('content').get('default')
                    for p in ElementTree.fromstring(meta).iter('parameter')}
        self.assertEqual('/' + names.MANIFEST, defaults['manifest'])
        self.assertEqual(names.CTLSOCKET, defaults['ctlsocket'])
        with open(AGENT) as f:
            text = f.read()
        self.assertEqual(1, text.count(names.MANIFEST))
        self.assertEqual(1, text.count(names.CTLSOCKET))
        # the here-document expands those two and nothing else
        heredoc = re.search(r'cat <<END\n(.*?\n)END\n', text, re.S).group(1)
        self.assertEqual(heredoc.replace(
            '${DEFAULT_MANIFEST}', '/' + names.MANIFEST).replace(
            '${DEFAULT_CTLSOCKET}', names.CTLSOCKET), meta)

    def test_an_error_gives_its_exit_reason(self):
        # ocf-shellfuncs is sourced only when an action logs: an error
        # still reaches pacemaker as ocf-exit-reason
        if ocf_unavailable():
            self.skipTest(ocf_unavailable())
        env = dict(os.environ, OCF_ROOT=OCF_ROOT,
                   OCF_RA_VERSION_MAJOR='1', OCF_RESOURCE_INSTANCE='t',
                   OCF_RESKEY_vip='192.0.2.5', OCF_RESKEY_vip_name='t',
                   OCF_RESKEY_manifest='/nonexistent/manifest.json')
        result = pluto.run([AGENT, 'validate-all'], env=env)
        self.assertEqual(OCF_ERR_INSTALLED, result.returncode)
        self.assertIn('ocf-exit-reason:no tripleo-ipsec manifest at '
                      '/nonexistent/manifest.json', result.stderr)


def agent_part(name):
    """One shell function of the agent, or its generated block, as text."""
    with open(AGENT) as f:
        text = f.read()
    if name.endswith('()'):
        match = re.search(r'^%s \{\n.*?^\}\n' % re.escape(name), text,
                          re.M | re.S)
    else:
        match = re.search(r'^# BEGIN generated: [^\n]*: %s\n.*?^# END [^\n]*\n'
                          % re.escape(name), text, re.M | re.S)
    return match.group(0)


class TestManifest(base.TestCase):
    """What the agent reads of the manifest, with the shell alone.

    Render writes the manifest's VIPs first, one a line, their keys in a
    fixed order (render.manifest_text).  For every VIP of every host of
    every fixture the agent's own functions (run alone, by sh) read what
    the JSON says, and its validate-all finds the VIP there, at its
    address, with its holder conns and their file.
    """

    KEYS = ['address', 'alias', 'file', 'holder', 'network', 'peer']

    def setUp(self):
        super().setUp()
        why = ocf_unavailable()
        if why:
            self.skipTest(why)
        if not shutil.which('ipsec'):
            self.skipTest('libreswan is not installed '
                          '(apt-get install libreswan)')

    def read(self, manifest_path, vip_name):
        """What the agent's vip_read sets, as a dict."""
        script = ''.join([
            agent_part('names'), agent_part('names_of()'),
            agent_part('vip_read()'),
            'vip_read\n', 'printf "%s\\n" "$VIP_FOUND" "$VIP_ADDRESS" '
            '"$VIP_ALIAS" "$VIP_FILE" "$VIP_HOLDERS" "$VIP_PEERS" '
            '"$VIP_TOTAL"\n'])
        result = pluto.run(['sh', '-c', script], env=dict(
            os.environ, OCF_RESKEY_manifest=manifest_path,
            OCF_RESKEY_vip_name=vip_name))
        self.assertEqual((0, ''), (result.returncode, result.stderr))
        return dict(zip(('found', 'address', 'alias', 'file', 'holder',
                         'peer', 'total'), result.stdout.split('\n')))

    def validate(self, manifest_path, vip_name, address):
        env = dict(os.environ, OCF_ROOT=OCF_ROOT, OCF_RESOURCE_INSTANCE='t',
                   OCF_RESKEY_vip_name=vip_name, OCF_RESKEY_vip=address,
                   OCF_RESKEY_manifest=manifest_path)
        return pluto.run([AGENT, 'validate-all'], env=env)

    def test_one_controller_every_vip_resource_validates(self):
        # one controller: a VIP on a network no other node is on gets no
        # resource (its agent would have no holder conn); every other VIP's
        # agent passes validate-all on its holder
        for controllers, computes in ((1, 2), (1, 0)):
            topo = sources.topology_of(synth.stack_outputs(
                [synth.controller(controllers), synth.compute(computes)]),
                synth.net_cidr_map())
            the_plan = base.make_plan(topo)
            out, _ = self.render(the_plan)
            lonely = {v.name for v in topo.vips
                      if v.network in the_plan.networks and
                      len(topo.members(v.network)) < 2}
            self.assertTrue(lonely, (controllers, computes))
            self.assertEqual(set(), lonely & {v.name
                                              for v in the_plan.vips})
            for vip in the_plan.vips:
                for holder in vip.holders:
                    path = os.path.join(out, holder, names.MANIFEST)
                    result = self.validate(path, vip.name, vip.address)
                    self.assertEqual(0, result.returncode, result.stderr)
            with open(os.path.join(out, names.PACEMAKER_COMMANDS)) as f:
                commands = json.load(f)['commands']
            self.assertEqual(len(the_plan.vips) > 0, bool(commands))

    def test_every_vip_of_every_host_of_every_fixture(self):
        checked = refused = 0
        for fixture in sorted(base.FIXTURE_FILES):
            the_plan = base.make_plan(base.fixture_topology(fixture))
            out, _ = self.render(the_plan)
            addresses = {v.name: v.address for v in the_plan.vips}
            for host in sorted(the_plan.hosts):
                path = os.path.join(out, host, names.MANIFEST)
                with open(path) as f:
                    lines = f.read().split('\n')
                manifest = json.loads('\n'.join(lines))
                vips = manifest['vips']
                where = '%s/%s' % (fixture, host)
                # the layout the agent reads
                self.assertEqual('{"vips":{', lines[0], where)
                self.assertEqual(sorted(vips), [
                    json.loads('{%s}' % line.rstrip(',')).popitem()[0]
                    for line in lines[1:len(vips) + 1]], where)
                self.assertEqual([','] * (len(vips) - 1) + [
                    '}'], [line[-1] for line in lines[1:len(vips) + 1]])
                self.assertTrue(lines[len(vips) + 1].startswith('},"'))
                self.assertEqual(len(vips) + 3, len(lines))
                self.assertEqual('', lines[-1])
                for name, vip in vips.items():
                    self.assertEqual(self.KEYS, list(vip), where)
                    self.assertEqual(addresses[name], vip['address'])
                    self.assertEqual(names.vip_holder_alias(name),
                                     vip['alias'])
                    self.assertEqual('/' + names.vip_conf(name), vip['file'])
                    self.assertEqual({
                        'found': '1', 'address': vip['address'],
                        'alias': vip['alias'],
                        'file': os.path.join(out, host) + vip['file'],
                        'holder': ''.join(' ' + n for n in vip['holder']),
                        'peer': ''.join(' ' + n for n in vip['peer']),
                        'total': str(len(vip['holder']))},
                        self.read(path, name), '%s %s' % (where, name))
                    result = self.validate(path, name, vip['address'])
                    if vip['holder']:
                        self.assertEqual((0, ''), (result.returncode,
                                                   result.stderr),
                                         '%s %s' % (where, name))
                        checked += 1
                    else:
                        # a node that never holds it has nothing to run
                        self.assertEqual(OCF_ERR_CONFIGURED,
                                         result.returncode, where)
                        self.assertIn('rendered no conns for VIP %s' % name,
                                      result.stderr)
                        refused += 1
        self.assertGreater(checked, 20)
        self.assertGreater(refused, 20)

    def test_the_check_fails_on_what_the_manifest_does_not_say(self):
        the_plan = base.make_plan(base.fixture_topology('stock'))
        out, _ = self.render(the_plan)
        path = os.path.join(out, HOST, names.MANIFEST)
        vip = [v for v in the_plan.vips if v.name == 'internal_api'][0]
        self.assertEqual(0, self.validate(path, vip.name,
                                          vip.address).returncode)
        # another address
        result = self.validate(path, vip.name, '172.16.2.99')
        self.assertEqual(OCF_ERR_CONFIGURED, result.returncode)
        self.assertIn('VIP internal_api is %s in tripleo-ipsec\'s manifest, '
                      'not 172.16.2.99' % vip.address, result.stderr)
        # no such VIP (nor one whose name it starts)
        for name in ('nosuch', 'internal', 'internal_api2'):
            result = self.validate(path, name, vip.address)
            self.assertEqual(OCF_ERR_CONFIGURED, result.returncode, name)
            self.assertIn('has no VIP %s' % name, result.stderr)
        # a pattern is not even a name
        result = self.validate(path, '*', vip.address)
        self.assertEqual(OCF_ERR_CONFIGURED, result.returncode)
        self.assertIn('parameter vip_name is not valid', result.stderr)
        with open(path) as f:
            manifest = json.load(f)
        # the same JSON in another layout (as render wrote it before): the
        # agent reads no VIP from it, and says so
        with open(path, 'w') as f:
            json.dump(manifest, f, sort_keys=True, separators=(',', ':'))
        result = self.validate(path, vip.name, vip.address)
        self.assertEqual(OCF_ERR_CONFIGURED, result.returncode)
        self.assertIn('has no VIP internal_api', result.stderr)
        # the VIP's file is gone
        os.unlink(os.path.join(out, HOST, names.vip_conf(vip.name)))
        vips = manifest.pop('vips')
        with open(path, 'w') as f:
            f.write(render.manifest_text(manifest, vips))
        result = self.validate(path, vip.name, vip.address)
        self.assertEqual(OCF_ERR_INSTALLED, result.returncode)
        self.assertIn('no %s/%s' % (os.path.join(out, HOST),
                                    names.vip_conf(vip.name)),
                      result.stderr)


class AgentTests(object):
    """The agent's actions against one real pluto.

    The node as the role leaves it: every conn loaded but the VIP's holder
    conns, then IPaddr2 brings the VIP up here.  A subclass gives the pluto
    and runs the agent.
    """

    # the routing pluto reports for a conn that traps (4.x's words)
    TRAP = {'prospective erouted'}
    # this node's own conn towards the VIP, once the VIP is here
    OWN_WITH_VIP = 'unrouted'

    def setUp(self):
        super().setUp()
        self.skip_unless_available()
        topo = base.fixture_topology('stock')
        self.plan = base.make_plan(topo)
        out = self.render_bundle(self.plan)
        self.etc = os.path.join(out, HOST, names.IPSEC_D)
        self.manifest_path = os.path.join(out, HOST, names.MANIFEST)
        with open(self.manifest_path) as f:
            self.manifest = json.load(f)
        self.vip = [v for v in self.plan.vips if v.name == 'internal_api'][0]
        host = [h for h in topo.hosts if h.name == HOST][0]
        # the node as the role leaves it ...
        self.pluto, self.lw = self.start_pluto(
            sorted(host.addresses.values()),
            os.path.join(self.etc, '*.secrets'))
        sections = {}
        for name in os.listdir(self.etc):
            if name.endswith('.conf'):
                with open(os.path.join(self.etc, name)) as f:
                    sections.update(libreswan.split_conf(f.read()))
        holders = libreswan.holder_conns(self.manifest)
        self.lw.add(sections, [c for c in self.manifest['conns']
                               if c not in holders])
        # ... then IPaddr2 brings the VIP up here
        self.ip_netns(['addr', 'add', self.vip.address + '/32', 'dev', 'lo'])

    def ip_netns(self, args):
        return pluto.run(['ip', '-n', self.pluto.netns] + args, check=True)

    def env(self):
        return dict(os.environ, OCF_ROOT=OCF_ROOT,
                    OCF_RESKEY_vip_name=self.vip.name,
                    OCF_RESKEY_vip=self.vip.address,
                    OCF_RESKEY_manifest=self.manifest_path,
                    OCF_RESKEY_ctlsocket=self.pluto.ctl,
                    OCF_RESOURCE_INSTANCE='tripleo-ipsec-internal_api')

    def agent(self, action):
        result = subprocess.run(self.agent_argv(action), capture_output=True,
                                text=True, env=self.env(), timeout=120)
        self.addDetail('agent %s' % action, content.text_content(
            'rc %d\n%s%s' % (result.returncode, result.stdout,
                             result.stderr)))
        return result.returncode

    def run_ocf_tester(self, params, extra=()):
        argv = ['ip', 'netns', 'exec', self.pluto.netns, 'ocf-tester', '-n',
                names.vip_ipsec_resource(self.vip.name)]
        for key, value in sorted(params.items()):
            argv += ['-o', '%s=%s' % (key, value)]
        return pluto.run(argv + list(extra) + [AGENT], timeout=300)

    def ocf_tester(self, *params):
        result = self.run_ocf_tester(
            {'vip_name': self.vip.name, 'vip': self.vip.address,
             'manifest': self.manifest_path, 'ctlsocket': self.pluto.ctl},
            params)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.assertIn('passed all tests', result.stdout)

    def test_start_and_stop(self):
        vip = self.manifest['vips'][self.vip.name]
        own = vip['peer']
        self.assertEqual(1, len(own))
        status = self.lw.status()
        self.assertIn(status[own[0]].routing, self.TRAP)
        self.assertFalse(set(vip['holder']) & set(status))
        self.assertEqual(OCF_NOT_RUNNING, self.agent('monitor'))

        self.assertEqual(0, self.agent('start'))
        status = self.lw.status()
        self.assertEqual(set(vip['holder']), set(vip['holder']) & set(status))
        # each holder conn traps before its SA is in: nothing the VIP
        # answers in between leaves in clear
        self.assertLessEqual({status[n].routing for n in vip['holder']},
                             self.TRAP)
        # traffic to the VIP is local now: no trap towards it
        self.assertEqual(self.OWN_WITH_VIP, status[own[0]].routing)
        self.assertEqual(0, self.agent('monitor'))

        self.assertEqual(0, self.agent('stop'))
        status = self.lw.status()
        self.assertFalse(set(vip['holder']) & set(status))
        # until the VIP has left, nothing from it or to it leaves in clear
        self.assertEqual(['0.0.0.0/0 %s/32' % self.vip.address,
                          '%s/32 0.0.0.0/0' % self.vip.address],
                         self.blocks())
        # IPaddr2 stops next; once the VIP is gone the trap is back, and
        # then the blocks are lifted
        self.ip_netns(['addr', 'del', self.vip.address + '/32', 'dev', 'lo'])
        deadline = time.monotonic() + 30
        while (self.lw.status()[own[0]].routing not in self.TRAP or
               self.blocks()):
            self.assertLess(time.monotonic(), deadline, 'no trap again')
            time.sleep(0.1)
        self.assertEqual(OCF_NOT_RUNNING, self.agent('monitor'))

    def test_start_while_this_node_negotiates_towards_the_vip(self):
        # the VIP's last holder stopped: this node's own conn towards the
        # VIP renegotiates (a peer's Delete revives it), then the VIP
        # lands here and the agent starts
        own = self.manifest['vips'][self.vip.name]['peer'][0]
        self.ip_netns(['addr', 'del', self.vip.address + '/32', 'dev', 'lo'])
        self.lw.initiate(own)
        deadline = time.monotonic() + 30
        # 4.x STATE_V2_PARENT_I1, 5.x IKE_SA_INIT_I: IKE_SA_INIT sent
        while not re.search(r'PARENT_I1|IKE_SA_INIT_I',
                            self.lw.whack('--showstates').stdout):
            self.assertLess(time.monotonic(), deadline, 'no negotiation')
            time.sleep(0.1)
        self.ip_netns(['addr', 'add', self.vip.address + '/32', 'dev', 'lo'])
        self.assertEqual(0, self.agent('start'))
        # pluto is alive, the holder conns in, its own conn unrouted
        status = self.lw.status()
        self.assertEqual(self.OWN_WITH_VIP, status[own].routing)
        holder = self.manifest['vips'][self.vip.name]['holder']
        self.assertEqual(set(holder), set(holder) & set(status))
        self.assertEqual(0, self.agent('monitor'))

    def blocks(self):
        """The agent's block policies: ['src dst', ...]."""
        out = self.ip_netns(['xfrm', 'policy', 'list', 'dir', 'out',
                             'action', 'block']).stdout
        return sorted(' '.join(p.split()[0:3:2]) for p in out.split('src ')[1:]
                      if 'priority 4000000000 ' in p)

    def test_monitor_fails_when_a_holder_conn_is_gone(self):
        self.assertEqual(0, self.agent('start'))
        holder = self.manifest['vips'][self.vip.name]['holder']
        self.lw.delete(holder[0])
        self.assertEqual(1, self.agent('monitor'))
        for name in holder[1:]:
            self.lw.delete(name)
        self.assertEqual(OCF_NOT_RUNNING, self.agent('monitor'))

    def test_not_running_without_the_vip(self):
        self.ip_netns(['addr', 'del', self.vip.address + '/32', 'dev', 'lo'])
        self.assertEqual(OCF_NOT_RUNNING, self.agent('monitor'))
        self.assertNotEqual(0, self.agent('start'))
        # and a start that failed leaves none of its conns behind
        holder = self.manifest['vips'][self.vip.name]['holder']
        self.assertFalse(set(holder) & set(self.lw.status()))

    def test_validate_all(self):
        self.assertEqual(0, self.agent('validate-all'))
        self.vip = self.vip.__class__('nosuch', 'x', self.vip.address, (),
                                      (), {})
        self.assertEqual(OCF_ERR_CONFIGURED, self.agent('validate-all'))


# Parameters the CIB could hold that are not what they say: each is
# refused before it is used (the first ran "link set dev lo down").
BAD_PARAMETERS = (
    ('vip', '{vip}\nlink set dev lo down'),
    ('vip', '{vip}/32'),
    ('vip', 'localhost'),
    ('vip_name', 'internal_api\n'),
    ('vip_name', '../internal_api'),
    ('manifest', 'relative.json'),
    ('manifest', '{manifest}\nx'),
    ('ctlsocket', '{ctlsocket} x'),
    ('ipsec', 'ipsec;id'),
    ('timeout', '5; reboot'),
)


class BadParameterTests(object):

    def test_bad_parameters_are_refused(self):
        good = self.env()
        for param, value in BAD_PARAMETERS:
            value = value.format(vip=self.vip.address,
                                 manifest=self.manifest_path,
                                 ctlsocket=self.pluto.ctl)
            env = dict(good, **{'OCF_RESKEY_' + param: value})
            for action, want in (('validate-all', OCF_ERR_CONFIGURED),
                                 ('start', OCF_ERR_CONFIGURED),
                                 ('monitor', OCF_ERR_CONFIGURED),
                                 ('stop', 0)):
                result = subprocess.run(
                    self.agent_argv(action), capture_output=True,
                    text=True, env=env, timeout=120)
                self.assertEqual(want, result.returncode,
                                 '%s=%r %s: %s' % (param, value, action,
                                                   result.stderr))
                if action != 'stop':
                    self.assertIn('parameter %s is not valid' % param,
                                  result.stderr)
            # nothing ran: lo is up, no conn of the VIP was loaded
            self.assertIn('UP', self.ip_netns(['link', 'show', 'lo']).stdout)
            self.assertEqual(set(), set(self.manifest['vips'][
                self.vip.name]['holder']) & set(self.lw.status()))
        # ocf-tester's own harness refuses them too
        for param, value in BAD_PARAMETERS[:1] + BAD_PARAMETERS[3:4]:
            value = value.format(vip=self.vip.address)
            params = {'vip_name': self.vip.name, 'vip': self.vip.address,
                      'manifest': self.manifest_path,
                      'ctlsocket': self.pluto.ctl}
            params[param] = value
            result = self.run_ocf_tester(params)
            self.assertNotEqual(0, result.returncode, result.stdout)
            self.assertNotIn('passed all tests', result.stdout)


class TestAgent(AgentTests, BadParameterTests, base.TestCase):
    """Against the host's libreswan 4.10."""

    def skip_unless_available(self):
        why = pluto.available()
        if why:
            self.skipTest(why)
        if not shutil.which('ocf-tester'):
            self.skipTest('resource-agents is not installed '
                          '(apt-get install resource-agents)')

    def render_bundle(self, the_plan):
        return self.render(the_plan)[0]

    def start_pluto(self, addresses, secrets_glob):
        scratch = pluto.ScratchPluto(addresses, secrets_glob)
        self.addCleanup(scratch.stop)
        return scratch, libreswan.Libreswan(scratch.ctl, 30, (
            'ip', 'netns', 'exec', scratch.netns, 'ipsec'))

    def agent_argv(self, action):
        return ['ip', 'netns', 'exec', self.pluto.netns, AGENT, action]

    def test_ocf_tester(self):
        self.ocf_tester()
