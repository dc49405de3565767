"""ocf:tripleo-ipsec:vip against a real pluto in a scratch namespace, with
resource-agents' own ocf-tester."""

import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree

from tests import base
from tests import pluto
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names

AGENT = os.path.join(base.os.path.dirname(base.FIXTURES), '..', 'ansible',
                     'roles', 'tripleo_ipsec', 'files', 'ocf', 'vip')
AGENT = os.path.realpath(AGENT)
HOST = 'overcloud-controller-0'


class TestAgentFile(base.TestCase):

    def test_shellcheck(self):
        if not shutil.which('shellcheck'):
            self.skipTest('shellcheck is not installed '
                          '(apt-get install shellcheck)')
        result = pluto.run(['shellcheck', AGENT])
        self.assertEqual(0, result.returncode, result.stdout)

    def test_reads_the_file_render_names(self):
        with open(AGENT) as f:
            text = f.read()
        vip_file = os.path.basename(names.vip_conf('${OCF_RESKEY_vip_name}'))
        self.assertIn('VIP_FILE="${OCF_RESKEY_manifest%%/*}/%s"' % vip_file,
                      text)

    def test_meta_data_is_valid(self):
        if not shutil.which('xmllint'):
            self.skipTest('xmllint is not installed '
                          '(apt-get install libxml2-utils)')
        if not os.path.isdir('/usr/lib/ocf/lib/heartbeat'):
            self.skipTest('resource-agents is not installed')
        meta = pluto.run([AGENT, 'meta-data'],
                         env=dict(os.environ, OCF_ROOT='/usr/lib/ocf'))
        self.assertEqual(0, meta.returncode, meta.stderr)
        lint = subprocess.run(['xmllint', '--noout', '-'], input=meta.stdout,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, lint.returncode, lint.stderr)
        self.assertIn('<parameter name="vip_name" unique="1" required="1">',
                      meta.stdout)

    def test_defaults_are_the_names(self):
        # tools/generate.py writes them from names, once; meta-data says
        # them, whatever the parameters are
        if not os.path.isdir('/usr/lib/ocf/lib/heartbeat'):
            self.skipTest('resource-agents is not installed')
        result = pluto.run([AGENT, 'meta-data'], env=dict(
            os.environ, OCF_ROOT='/usr/lib/ocf', OCF_RESKEY_manifest='/x',
            OCF_RESKEY_ctlsocket='/y'))
        self.assertEqual(0, result.returncode, result.stderr)
        meta = result.stdout
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
        if not os.path.isdir('/usr/lib/ocf/lib/heartbeat'):
            self.skipTest('resource-agents is not installed')
        env = dict(os.environ, OCF_ROOT='/usr/lib/ocf',
                   OCF_RA_VERSION_MAJOR='1', OCF_RESOURCE_INSTANCE='t',
                   OCF_RESKEY_vip='192.0.2.5', OCF_RESKEY_vip_name='t',
                   OCF_RESKEY_manifest='/nonexistent/manifest.json')
        result = pluto.run([AGENT, 'validate-all'], env=env)
        self.assertEqual(5, result.returncode)     # OCF_ERR_INSTALLED
        self.assertIn('ocf-exit-reason:no tripleo-ipsec manifest at '
                      '/nonexistent/manifest.json', result.stderr)


class TestAgent(base.TestCase):

    def setUp(self):
        super(TestAgent, self).setUp()
        why = pluto.available()
        if why:
            self.skipTest(why)
        if not shutil.which('ocf-tester'):
            self.skipTest('resource-agents is not installed '
                          '(apt-get install resource-agents)')
        topo = base.fixture_topology('stock')
        self.plan = base.make_plan(topo)
        out, _ = self.render(self.plan)
        self.etc = os.path.join(out, HOST, names.IPSEC_D)
        self.manifest_path = os.path.join(self.etc, os.path.basename(
            names.MANIFEST))
        with open(self.manifest_path) as f:
            self.manifest = json.load(f)
        self.vip = [v for v in self.plan.vips if v.name == 'internal_api'][0]
        host = [h for h in topo.hosts if h.name == HOST][0]
        # the node as the role leaves it ...
        self.pluto = pluto.ScratchPluto(
            sorted(host.addresses.values()),
            os.path.join(self.etc, '*.secrets'))
        self.addCleanup(self.pluto.stop)
        self.lw = libreswan.Libreswan(self.pluto.ctl, 30, (
            'ip', 'netns', 'exec', self.pluto.netns, 'ipsec'))
        sections = {}
        for name in os.listdir(self.etc):
            if name.endswith('.conf'):
                with open(os.path.join(self.etc, name)) as f:
                    sections.update(libreswan.split_conf(f.read()))
        holders = libreswan.holder_conns(self.manifest)
        self.lw.add(sections, [c for c in self.manifest['conns']
                               if c not in holders])
        # ... then IPaddr2 brings the VIP up here
        self.pluto.exec_(['ip', 'addr', 'add', self.vip.address + '/32',
                          'dev', 'lo'])

    def agent(self, action, *tester):
        env = dict(os.environ, OCF_ROOT='/usr/lib/ocf',
                   OCF_RESKEY_vip_name=self.vip.name,
                   OCF_RESKEY_vip=self.vip.address,
                   OCF_RESKEY_manifest=self.manifest_path,
                   OCF_RESKEY_ctlsocket=self.pluto.ctl,
                   OCF_RESOURCE_INSTANCE='tripleo-ipsec-internal_api')
        return subprocess.run(['ip', 'netns', 'exec', self.pluto.netns,
                               AGENT, action], capture_output=True, text=True,
                              env=env, timeout=120).returncode

    def test_ocf_tester(self):
        result = pluto.run(
            ['ip', 'netns', 'exec', self.pluto.netns, 'ocf-tester', '-n',
             names.vip_ipsec_resource(self.vip.name),
             '-o', 'vip_name=%s' % self.vip.name,
             '-o', 'vip=%s' % self.vip.address,
             '-o', 'manifest=%s' % self.manifest_path,
             '-o', 'ctlsocket=%s' % self.pluto.ctl, AGENT], timeout=300)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.assertIn('passed all tests', result.stdout)

    def test_start_and_stop(self):
        vip = self.manifest['vips'][self.vip.name]
        own = vip['peer']
        self.assertEqual(1, len(own))
        status = self.lw.status()
        self.assertEqual('prospective erouted', status[own[0]].routing)
        self.assertFalse(set(vip['holder']) & set(status))

        self.assertEqual(0, self.agent('start'))
        status = self.lw.status()
        self.assertEqual(set(vip['holder']), set(vip['holder']) & set(status))
        # each holder conn traps before its SA is in: nothing the VIP
        # answers in between leaves in clear
        self.assertEqual({'prospective erouted'},
                         {status[n].routing for n in vip['holder']})
        # traffic to the VIP is local now: no trap towards it
        self.assertEqual('unrouted', status[own[0]].routing)
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
        self.pluto.exec_(['ip', 'addr', 'del', self.vip.address + '/32',
                          'dev', 'lo'])
        deadline = time.monotonic() + 30
        while (self.lw.status()[own[0]].routing != 'prospective erouted' or
               self.blocks()):
            self.assertLess(time.monotonic(), deadline, 'no trap again')
            time.sleep(0.1)
        self.assertEqual(7, self.agent('monitor'))

    def blocks(self):
        """The agent's block policies: ['src dst', ...]."""
        out = self.pluto.exec_(['ip', 'xfrm', 'policy', 'list', 'dir', 'out',
                                'action', 'block']).stdout
        return sorted(' '.join(p.split()[0:3:2]) for p in out.split('src ')[1:]
                      if 'priority 4000000000 ' in p)

    def test_monitor_fails_when_a_holder_conn_is_gone(self):
        self.assertEqual(0, self.agent('start'))
        holder = self.manifest['vips'][self.vip.name]['holder']
        self.lw.delete(holder[0])
        self.assertEqual(1, self.agent('monitor'))

    def test_not_running_without_the_vip(self):
        self.pluto.exec_(['ip', 'addr', 'del', self.vip.address + '/32',
                          'dev', 'lo'])
        self.assertEqual(7, self.agent('monitor'))
        self.assertNotEqual(0, self.agent('start'))
        # and a start that failed leaves none of its conns behind
        holder = self.manifest['vips'][self.vip.name]['holder']
        self.assertFalse(set(holder) & set(self.lw.status()))

    def test_validate_all(self):
        self.assertEqual(0, self.agent('validate-all'))
        self.vip = self.vip.__class__('nosuch', 'x', self.vip.address, (),
                                      (), {})
        self.assertEqual(6, self.agent('validate-all'))   # ERR_CONFIGURED
