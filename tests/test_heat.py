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
    'IpsecLibreswanVersion': ('tripleo_ipsec_libreswan_version', '5'),
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
        self.assertEqual({'100 ipsec ike': {'proto': 'udp',
                                            'dport': [500, 4500]},
                          '101 ipsec esp': {'proto': 'esp'}},
                         data['firewall_rules'])
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
