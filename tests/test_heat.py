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

"""The composable service against Heat's own engine (openstack-heat,
offline) and the checks THT's tools/yaml-validate.py applies to service
templates."""

import os
import re
import subprocess
import sys

import yaml

from tests import base
from tripleo_ipsec_lab import heat
from tripleo_ipsec_lab import steps
from tripleo_ipsec_lab import synth

TOP = heat.TOP
STANDARD = ('ServiceData', 'ServiceNetMap', 'RoleName', 'RoleParameters',
            'EndpointMap')
HEAT_FUNCTIONS = {'get_attr', 'get_file', 'get_param', 'get_resource',
                  'str_replace', 'str_replace_strict', 'str_replace_vstrict',
                  'str_split', 'list_join', 'list_concat',
                  'list_concat_unique'}
KNOBS = {
    'IpsecSkipNetworks': ('tripleo_ipsec_skip_networks', ['ctlplane']),
    'IpsecIkeProposal': ('tripleo_ipsec_ike', 'chacha20_poly1305-sha2_512'),
    'IpsecEspProposal': ('tripleo_ipsec_esp', 'aes_gcm128'),
    'IpsecFailurePolicy': ('tripleo_ipsec_failure_policy',
                           'private-or-clear'),
    'IpsecKeyEpoch': ('tripleo_ipsec_key_epoch', 7),
    'IpsecMasterKey': ('tripleo_ipsec_master_key', 'b3BlcmF0b3Iga2V5'),
}


def lint_functions(node, path=''):
    """Keys that look like Heat functions but are none.

    Heat takes such a key (a typo: get_parm) as plain data.
    """
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if (isinstance(key, str) and re.match(r'^(get|str|list)_', key)
                    and key not in HEAT_FUNCTIONS):
                found.append('%s: %s' % (path, key))
            found += lint_functions(value, '%s/%s' % (path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += lint_functions(value, '%s[%d]' % (path, i))
    return found


def templates():
    root = os.path.join(TOP, 'deployment')
    for dirpath, _, filenames in os.walk(root):
        for name in sorted(filenames):
            if name.endswith('.yaml'):
                yield os.path.join(dirpath, name)


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


class TestRoleData(base.TestCase):

    def test_defaults(self):
        data = heat.role_data()
        self.assertEqual('ipsec', data['service_name'])
        # the standard parameters' net_cidr_map is empty: no subnet, no rule
        self.assertEqual({}, data['firewall_rules'])
        external = data['external_deploy_tasks']
        self.assertEqual(['step | int == 1'], [t['when'] for t in external])
        self.assertEqual({'name': 'tripleo_ipsec', 'tasks_from': 'render'},
                         external[0]['ansible.builtin.include_role'])
        render_vars = external[0]['vars']
        self.assertEqual({'redis': 'internal_api',
                          'ovn_dbs': 'internal_api'},
                         render_vars['tripleo_ipsec_vip_networks'])
        self.assertEqual(['tenant', 'external', 'ctlplane'],
                         render_vars['tripleo_ipsec_skip_networks'])
        node = data['deploy_steps_tasks']
        self.assertEqual([('step | int == 1', False),
                          ('step | int == 3', True)],
                         [(t['when'], t['vars']['tripleo_ipsec_vips'])
                          for t in node])
        for section in ('update_tasks', 'upgrade_tasks'):
            self.assertEqual(['tripleo_ipsec'], [
                t['ansible.builtin.include_role']['name']
                for t in data[section]])

    def test_every_knob_reaches_the_render_task(self):
        params = {name: value for name, (_, value) in KNOBS.items()}
        params['ServiceNetMap'] = {'RedisNetwork': 'storage',
                                   'OvnDbsNetwork': 'internal_api'}
        render_vars = heat.role_data(params)['external_deploy_tasks'][0][
            'vars']
        for name, (var, value) in KNOBS.items():
            self.assertEqual(value, render_vars[var], name)
        self.assertEqual('storage',
                         render_vars['tripleo_ipsec_vip_networks']['redis'])

    def test_heat_refuses_bad_values(self):
        from heat.common import exception
        self.assertRaises(exception.StackValidationFailed, heat.role_data,
                          {'IpsecFailurePolicy': 'sometimes'})
        self.assertRaises(exception.StackValidationFailed, heat.role_data,
                          {'IpsecKeyEpoch': -1})

    def test_environment_maps_the_service_to_the_template(self):
        stk, path = heat.service_stack()
        self.assertEqual(os.path.realpath(heat.SERVICE_TEMPLATE),
                         os.path.realpath(path))
        # the type resolves through the registry inside a parent stack
        self.assertIn('Ipsec', heat.wrapped_stack().resources)

    def test_environment_documents_every_knob(self):
        with open(heat.ENVIRONMENT) as f:
            text = f.read()
        for name in KNOBS:
            self.assertIn('#   %s:' % name, text)


def fixture_net_cidr_map(name):
    """The fixture's ServiceData.net_cidr_map as THT gives it.

    Every network's name_lower -> the CIDRs of all its subnets.
    """
    if name == 'stock':
        return synth.net_cidr_map()     # stock.json has the default networks
    return base.fixture_cidrs(name)


def resolved_rules(net_cidr_map, **parameters):
    """firewall_rules as Heat's engine resolves them for this ServiceData."""
    parameters['ServiceData'] = {'net_cidr_map': net_cidr_map}
    return heat.role_data(parameters)['firewall_rules']


def expected_rules(scopes):
    """The rules for (network, CIDR, ipversion) scopes, written out."""
    rules = {}
    for net, cidr, version in scopes:
        rules['100 ipsec ike %s %s' % (net, cidr)] = {
            'proto': 'udp', 'dport': [500, 4500], 'source': cidr,
            'ipversion': version}
        rules['101 ipsec esp %s %s' % (net, cidr)] = {
            'proto': 'esp', 'source': cidr, 'ipversion': version}
    return rules


SPINE_LEAF_PROTECTED = [
    ('internal_api', '172.16.2.0/24', 'ipv4'),
    ('internal_api', '172.17.2.0/24', 'ipv4'),
    ('internal_api', '172.18.2.0/24', 'ipv4'),
    ('storage', '172.16.1.0/24', 'ipv4'),
    ('storage', '172.17.1.0/24', 'ipv4'),
    ('storage', '172.18.1.0/24', 'ipv4'),
    ('storage_mgmt', '172.16.3.0/24', 'ipv4'),
    ('storage_mgmt', '172.17.3.0/24', 'ipv4'),
    ('storage_mgmt', '172.18.3.0/24', 'ipv4'),
]


class TestFirewallRules(base.TestCase):
    """firewall_rules as Heat resolves them.

    From ServiceData.net_cidr_map and IpsecSkipNetworks: IKE and ESP from
    the protected networks' subnets only.
    """

    def test_stock(self):
        self.assertEqual(expected_rules([
            ('internal_api', '172.16.2.0/24', 'ipv4'),
            ('storage', '172.16.1.0/24', 'ipv4'),
            ('storage_mgmt', '172.16.3.0/24', 'ipv4')]),
            resolved_rules(fixture_net_cidr_map('stock')))

    def test_composable(self):
        # the plain-shape fixture, with a custom network (storage_nfs)
        self.assertEqual(expected_rules([
            ('internal_api', '172.16.2.0/24', 'ipv4'),
            ('storage', '172.16.1.0/24', 'ipv4'),
            ('storage_mgmt', '172.16.3.0/24', 'ipv4'),
            ('storage_nfs', '172.16.4.0/24', 'ipv4')]),
            resolved_rules(fixture_net_cidr_map('composable')))

    def test_spine_leaf_every_subnet(self):
        rules = resolved_rules(fixture_net_cidr_map('spine_leaf'))
        self.assertEqual(expected_rules(SPINE_LEAF_PROTECTED), rules)
        self.assertEqual({'proto': 'udp', 'dport': [500, 4500],
                          'source': '172.18.1.0/24', 'ipversion': 'ipv4'},
                         rules['100 ipsec ike storage 172.18.1.0/24'])

    def test_ipv6_subnets_carry_their_ipversion(self):
        self.assertEqual(expected_rules([
            ('internal_api', 'fd00:fd00:fd00:2000::/64', 'ipv6'),
            ('storage', 'fd00:fd00:fd00:3000::/64', 'ipv6'),
            ('storage_mgmt', 'fd00:fd00:fd00:4000::/64', 'ipv6')]),
            resolved_rules(fixture_net_cidr_map('dual_stack')))

    def test_no_rule_for_a_skipped_network_none_open_to_any(self):
        for name in ('stock', 'composable', 'spine_leaf', 'dual_stack'):
            cidr_map = fixture_net_cidr_map(name)
            rules = resolved_rules(cidr_map)
            self.assertTrue(rules, name)
            for rule_name, rule in rules.items():
                net = rule_name.split()[3]
                self.assertNotIn(net, ('tenant', 'external', 'ctlplane'),
                                 rule_name)
                self.assertIn(rule['source'], cidr_map[net], rule_name)

    def test_skip_networks_change_the_rules(self):
        cidr_map = fixture_net_cidr_map('spine_leaf')
        opened = resolved_rules(cidr_map, IpsecSkipNetworks=['ctlplane'])
        self.assertEqual(expected_rules(SPINE_LEAF_PROTECTED + [
            ('external', '10.0.0.0/24', 'ipv4'),
            ('tenant', '172.16.0.0/24', 'ipv4'),
            ('tenant', '172.17.0.0/24', 'ipv4'),
            ('tenant', '172.18.0.0/24', 'ipv4')]), opened)
        narrowed = resolved_rules(cidr_map, IpsecSkipNetworks=[
            'tenant', 'external', 'ctlplane', 'storage_mgmt'])
        self.assertEqual(expected_rules(SPINE_LEAF_PROTECTED[:6]), narrowed)

    def test_no_net_cidr_map_no_rule(self):
        self.assertEqual({}, resolved_rules({}))
        self.assertEqual({}, heat.role_data(
            {'ServiceData': {}})['firewall_rules'])

    def test_heat_and_the_plan_agree(self):
        """The deployed rules are the rules the plan prints."""
        skips = (('tenant', 'external', 'ctlplane'), ('ctlplane',),
                 ('tenant', 'external', 'ctlplane', 'storage'))
        for name in ('composable', 'spine_leaf', 'dual_stack'):
            cidr_map = fixture_net_cidr_map(name)
            topo = base.fixture_topology(name)
            for skip in skips:
                planned = base.make_plan(topo, skip_networks=skip)
                self.assertEqual(
                    planned.firewall_rules,
                    resolved_rules(cidr_map, IpsecSkipNetworks=list(skip)),
                    '%s, skip %s' % (name, ','.join(skip)))

    def test_the_lab_deploys_its_own_subnets(self):
        from tripleo_ipsec_lab import overcloud
        lab = overcloud.Overcloud(None, self.tempdir())   # no guest needed
        self.assertTrue(lab.role_data['firewall_rules'])
        self.assertEqual(lab.plan.firewall_rules,
                         lab.role_data['firewall_rules'])


class TestIpaMetadata(base.TestCase):
    """Certificates from IPA: THT registers ipsec/<fqdn> for every node."""

    def metadata(self, **parameters):
        parameters['ServiceData'] = {
            'net_cidr_map': fixture_net_cidr_map('composable')}
        return heat.role_data(parameters).get('metadata_settings')

    def test_one_node_entry_per_protected_network(self):
        self.assertEqual(
            [{'service': 'ipsec', 'network': net, 'type': 'node'}
             for net in ('internal_api', 'storage', 'storage_mgmt',
                         'storage_nfs')],
            self.metadata(IpsecAuth='cert', IpsecCertCa='IPA'))
        self.assertEqual(
            [{'service': 'ipsec', 'network': 'storage_nfs',
              'type': 'node'}],
            self.metadata(IpsecAuth='cert', IpsecCertCa='IPA',
                          IpsecSkipNetworks=['ctlplane', 'tenant', 'external',
                                             'internal_api', 'storage',
                                             'storage_mgmt']))

    def test_none_without_ipa(self):
        self.assertIsNone(self.metadata())
        self.assertIsNone(self.metadata(IpsecAuth='cert',
                                        IpsecCertCa='tripleo-ipsec-lab'))

    def test_staged_on_psk_with_ipa(self):
        # certificates staged ahead of the switch to cert: IPA needs the
        # principals then
        self.assertEqual(self.metadata(IpsecAuth='cert', IpsecCertCa='IPA'),
                         self.metadata(IpsecCertCa='IPA'))


class TestYamlValidate(base.TestCase):
    """What THT's tools/yaml-validate.py checks in service templates."""

    def test_templates(self):
        found = list(templates())
        self.assertTrue(found)
        for path in found:
            tpl = load(path)
            self.assertEqual('wallaby', tpl['heat_template_version'], path)
            for name in STANDARD:
                self.assertIn(name, tpl['parameters'], path)
            role_data = tpl['outputs']['role_data']['value']
            # deployment/<svc>/<svc>-baremetal-ansible.yaml names service
            # <svc>
            service = os.path.basename(path).split('-')[0]
            self.assertEqual(service, role_data['service_name'], path)
            for section in ('external_deploy_tasks', 'deploy_steps_tasks',
                            'update_tasks', 'upgrade_tasks'):
                if section in role_data:
                    self.assertTrue(role_data[section], section)
            text = yaml.safe_dump(tpl['outputs'])
            for name in tpl['parameters']:
                if name in STANDARD:
                    continue
                self.assertTrue(re.search(r'get_param: (\[)?%s\b' % name,
                                          text), 'unused parameter ' + name)
            self.assertEqual([], lint_functions(tpl), path)

    def test_lint_catches_a_typo(self):
        tpl = {'outputs': {'role_data': {'value': {
            'x': {'get_parm': 'IpsecKeyEpoch'},
            'y': [{'list_joinn': [',', []]}], 'z': {'get_param': 'A'}}}}}
        self.assertEqual(
            ['/outputs/role_data/value/x: get_parm',
             '/outputs/role_data/value/y[0]: list_joinn'],
            lint_functions(tpl))


class TestResolvedTasks(base.TestCase):
    """The task lists Heat resolves pass ansible-lint and --syntax-check."""

    def test_ansible_lint_and_syntax_check(self):
        if not os.path.exists(os.path.join(TOP, '.git')):
            self.skipTest('ansible-lint needs a git checkout')
        work = self.tempdir()
        playbook = steps.write(heat.role_data(), work)
        bin_dir = os.path.dirname(sys.executable)
        env = dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(
            TOP, 'ansible', 'roles'), PATH=bin_dir + os.pathsep +
            os.environ.get('PATH', ''))
        result = subprocess.run(
            [os.path.join(bin_dir, 'ansible-playbook'), '--syntax-check',
             '-i', 'undercloud,', playbook], capture_output=True, text=True,
            env=env, timeout=300)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        result = subprocess.run(
            [os.path.join(bin_dir, 'ansible-lint'), '--offline', '--nocolor',
             '--project-dir', TOP, playbook], capture_output=True, text=True,
            env=env, timeout=600, cwd=TOP)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
