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

"""The pacemaker plan against pacemaker's own tools, on a CIB file: pcs -f
builds it, crm_verify accepts it, crm_simulate moves the agent with its
VIP and keeps it off nodes without the VIP."""

import os
import re
import shutil

from tests import base
from tests import pluto
from tripleo_ipsec.node import names
from tripleo_ipsec.node import pacemaker
from tripleo_ipsec_lab import overcloud

AGENT = os.path.realpath(os.path.join(
    base.FIXTURES, '..', '..', 'ansible', 'roles', 'tripleo_ipsec', 'files',
    'ocf', 'vip'))
INSTALLED = os.path.join('/usr/lib/ocf/resource.d', names.OCF_PROVIDER,
                         names.OCF_TYPE)
CONTROLLERS = ('overcloud-controller-0', 'overcloud-controller-1',
               'overcloud-controller-2')


def unavailable():
    """Why pcs cannot build a CIB here, or None."""
    for tool in ('pcs', 'crm_verify', 'crm_simulate', 'cibadmin'):
        if not shutil.which(tool):
            return ('%s is not installed (apt-get install pcs '
                    'pacemaker-cli-utils)' % tool)
    if os.geteuid() != 0:
        return 'needs root to install the agent for pcs'
    return None


def install_agent():
    """Install the OCF agent where the package puts it.

    pcs checks a resource's parameters against the agent's metadata, and
    pacemaker 2.1 finds agents only under /usr/lib/ocf/resource.d (it
    takes no other path).  Written to a temporary name and renamed, so a
    concurrent run never reads half an agent.
    """
    os.makedirs(os.path.dirname(INSTALLED), exist_ok=True)
    tmp = '%s.%d' % (INSTALLED, os.getpid())
    shutil.copy(AGENT, tmp)
    os.rename(tmp, INSTALLED)


def cluster_cib(test, path, vips):
    """A CIB file of 3 controllers with THT's VIP resources."""
    install_agent()
    overcloud.make_cib(path, vips, CONTROLLERS)


class TestPacemakerPlan(base.TestCase):

    def setUp(self):
        super(TestPacemakerPlan, self).setUp()
        why = unavailable()
        if why:
            self.skipTest(why)
        self.plan = base.make_plan(base.fixture_topology('stock'))
        self.cib = os.path.join(self.tempdir(), 'cib.xml')
        self.env = dict(os.environ, CIB_file=self.cib)
        cluster_cib(self, self.cib, self.plan.vips)

    def run_ok(self, args):
        result = pluto.run(args, env=self.env)
        self.assertEqual(0, result.returncode,
                         '%s: %s%s' % (' '.join(args), result.stdout,
                                       result.stderr))
        return result.stdout

    def cib_xml(self):
        with open(self.cib) as f:
            return f.read()

    def apply(self):
        todo = pacemaker.missing(pacemaker.commands(self.plan.vips),
                                 self.cib_xml(), self.cib)
        for argv in todo:
            self.run_ok(argv)
        return todo

    def placement(self, xml_file):
        """{resource: node} crm_simulate reports as started."""
        out = self.run_ok(['crm_simulate', '-x', xml_file])
        return dict(re.findall(r'\* (\S+)\s+\(ocf:\S+\):\s+Started (\S+)',
                               out))

    def test_pcs_builds_it_crm_verify_accepts_it_and_it_is_idempotent(self):
        created = self.apply()
        self.assertEqual(3 * len(self.plan.vips), len(created))
        self.run_ok(['crm_verify', '-x', self.cib, '-V'])
        self.assertEqual([], pacemaker.missing(
            pacemaker.commands(self.plan.vips), self.cib_xml(), self.cib))

    def started(self):
        """Apply, bring the controllers online: (CIB file, placement)."""
        self.apply()
        step = os.path.join(os.path.dirname(self.cib), 'step1.xml')
        online = [a for n in CONTROLLERS for a in ('-u', n)]
        self.run_ok(['crm_simulate', '-x', self.cib, '-q', 'true', '-S',
                     '-O', step] + online)
        return step, self.placement(step)

    def test_agent_follows_its_vip(self):
        step, placed = self.started()
        for vip in self.plan.vips:
            ip_res = names.vip_ip_resource(vip.address)
            ours = vip.resource['id']
            self.assertEqual(placed[ip_res], placed[ours], vip.name)

        # a move of the VIP takes its IPsec resource along
        vip = self.plan.vips[0]
        ip_res, ours = (names.vip_ip_resource(vip.address),
                        vip.resource['id'])
        target = [n for n in CONTROLLERS if n != placed[ip_res]][0]
        env, self.env = self.env, dict(self.env, CIB_file=step)
        self.run_ok(['crm_resource', '--move', '-r', ip_res, '-N', target])
        self.env = env
        moved = os.path.join(os.path.dirname(self.cib), 'step2.xml')
        out = self.run_ok(['crm_simulate', '-x', step, '-S', '-O', moved])
        self.assertIn('Move       %s' % ours, out)
        after = self.placement(moved)
        self.assertEqual((target, target), (after[ip_res], after[ours]))

        # a node failure: both start together elsewhere
        failed = os.path.join(os.path.dirname(self.cib), 'step3.xml')
        self.run_ok(['crm_simulate', '-x', moved, '-f', target, '-S', '-O',
                     failed])
        final = self.placement(failed)
        self.assertNotEqual(target, final[ip_res])
        self.assertEqual(final[ip_res], final[ours])

    def test_scores_keep_it_off_nodes_without_the_vip(self):
        step, placed = self.started()
        scores = self.run_ok(['crm_simulate', '-x', step, '--show-scores'])
        for vip in self.plan.vips:
            ours = vip.resource['id']
            for node in CONTROLLERS:
                pattern = r'%s allocation score on %s: (\S+)' % (
                    re.escape(ours), node)
                match = re.search(pattern, scores)
                self.assertIsNotNone(match, (ours, node))
                if node != placed[ours]:
                    self.assertEqual('-INFINITY', match.group(1),
                                     (ours, node))
