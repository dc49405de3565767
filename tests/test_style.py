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

"""Project checks that run as tests: flake8/hacking, reno lint and the
sample config's drift."""

import ast
import os
import shutil
import subprocess
import sys

import fixtures
import testtools

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _run(args):
    return subprocess.run(args, cwd=TOP, capture_output=True, text=True,
                          timeout=300)


class TestStyle(testtools.TestCase):

    def test_flake8_hacking(self):
        result = _run([os.path.join(BIN, 'flake8')])
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)

    def test_reno_lint(self):
        if not shutil.which('git'):
            self.skipTest('git is not installed (apt-get install git)')
        if not os.path.exists(os.path.join(TOP, '.git')):
            self.skipTest('reno needs a git checkout')
        result = _run([os.path.join(BIN, 'reno'), 'lint'])
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)

    def test_sample_config_matches_the_options(self):
        result = _run([os.path.join(BIN, 'oslo-config-generator'),
                       '--namespace', 'tripleo_ipsec', '--wrap-width', '79'])
        self.assertEqual(0, result.returncode, result.stderr)
        with open(os.path.join(TOP, 'etc', 'tripleo-ipsec.conf.sample')) as f:
            self.assertEqual(f.read(), result.stdout,
                             'etc/tripleo-ipsec.conf.sample is stale: run '
                             'tox -e genconfig')


class TestDocs(testtools.TestCase):

    def test_readme_is_valid_rst_and_names_the_test_command(self):
        import docutils.core
        with open(os.path.join(TOP, 'README.rst')) as f:
            text = f.read()
        # halt_level 2: any docutils warning is an error
        docutils.core.publish_string(
            text, writer_name='null',
            settings_overrides={'report_level': 2, 'halt_level': 2})
        self.assertIn('tools/test', text)
        with open(os.path.join(TOP, '.ci', 'run')) as f:
            self.assertIn('tools/test', f.read())

    def test_readme_documents_every_option(self):
        from tripleo_ipsec import options
        with open(os.path.join(TOP, 'README.rst')) as f:
            text = f.read()
        self.assertEqual([], [o.dest for o in options.OPTS
                              if '``%s``' % o.dest not in text])

    def test_readme_and_argument_specs_cover_every_role_variable(self):
        import yaml
        role = os.path.join(TOP, 'ansible', 'roles', 'tripleo_ipsec')
        with open(os.path.join(role, 'defaults', 'main.yml')) as f:
            defaults = yaml.safe_load(f)
        with open(os.path.join(role, 'meta', 'argument_specs.yml')) as f:
            specs = yaml.safe_load(f)['argument_specs']
        specified = {name for spec in specs.values()
                     for name in spec['options']}
        with open(os.path.join(TOP, 'README.rst')) as f:
            text = f.read()
        self.assertEqual([], [n for n in defaults
                              if '``%s``' % n not in text])
        self.assertEqual([], [n for n in defaults if n not in specified])


class TestGenerated(testtools.TestCase):
    """What tools/generate.py derives from tripleo_ipsec.options.KNOBS."""

    def _generate(self):
        sys.path.insert(0, os.path.join(TOP, 'tools'))
        self.addCleanup(sys.path.remove, os.path.join(TOP, 'tools'))
        import generate
        return generate

    def test_generated_blocks_are_fresh(self):
        result = _run([sys.executable, os.path.join('tools', 'generate.py'),
                       '--check'])
        self.assertEqual(0, result.returncode, result.stderr)

    def test_a_stale_block_is_found(self):
        generate = self._generate()
        top = self.useFixture(fixtures.TempDir()).path
        for path in generate.TARGETS:
            os.makedirs(os.path.join(top, os.path.dirname(path)),
                        exist_ok=True)
            shutil.copy(os.path.join(TOP, path), os.path.join(top, path))
        self.assertEqual({}, {p: 1 for p, (c, w) in
                              generate.generate(top).items() if c != w})
        spec = os.path.join(top, 'environments', 'ipsec.yaml')
        with open(spec) as f:
            text = f.read()
        with open(spec, 'w') as f:
            f.write(text.replace('IpsecKeyEpoch: 0', 'IpsecKeyEpoch: 1'))
        self.assertEqual(['environments/ipsec.yaml'], [
            p for p, (c, w) in generate.generate(top).items() if c != w])

    def test_role_defaults_and_specs_are_the_options(self):
        from tripleo_ipsec import options
        import yaml
        role = os.path.join(TOP, 'ansible', 'roles', 'tripleo_ipsec')
        with open(os.path.join(role, 'defaults', 'main.yml')) as f:
            defaults = yaml.safe_load(f)
        with open(os.path.join(role, 'meta', 'argument_specs.yml')) as f:
            render = yaml.safe_load(f)['argument_specs']['render']['options']
        for knob in options.KNOBS:
            self.assertEqual(knob.default, defaults[knob.role_var])
            self.assertEqual(knob.default, render[knob.role_var]['default'])
        self.assertEqual(options.Options(), options.load(
            (), **{k.name: defaults[k.role_var] for k in options.KNOBS}))


class TestDemo(testtools.TestCase):

    def test_help_installs_and_starts_nothing(self):
        venv = os.path.join(self.useFixture(fixtures.TempDir()).path, 'v')
        env = dict(os.environ, TRIPLEO_IPSEC_VENV=venv)
        result = subprocess.run([os.path.join(TOP, 'tools', 'demo'),
                                 '--help'], capture_output=True, text=True,
                                env=env, timeout=60)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('--failover MOVES', result.stdout)
        self.assertIn('--cluster', result.stdout)
        self.assertNotIn('tools/install', result.stderr)
        self.assertFalse(os.path.exists(venv))


class TestAnsible(testtools.TestCase):

    def _env(self):
        return dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(
            TOP, 'ansible', 'roles'), PATH=BIN + os.pathsep +
            os.environ.get('PATH', ''))

    def test_ansible_lint(self):
        if not os.path.exists(os.path.join(TOP, '.git')):
            self.skipTest('ansible-lint needs a git checkout')
        result = subprocess.run(
            [os.path.join(BIN, 'ansible-lint'), '--offline', '--nocolor',
             'ansible/roles/tripleo_ipsec', 'tests/playbooks'],
            cwd=TOP, capture_output=True, text=True, timeout=600,
            env=self._env())
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)

    def test_playbooks_syntax_check(self):
        playbooks = os.path.join(TOP, 'tests', 'playbooks')
        for name in sorted(os.listdir(playbooks)):
            result = subprocess.run(
                [os.path.join(BIN, 'ansible-playbook'), '--syntax-check',
                 '-i', 'localhost,', os.path.join(playbooks, name)],
                cwd=TOP, capture_output=True, text=True, timeout=300,
                env=self._env())
            self.assertEqual(0, result.returncode,
                             name + result.stdout + result.stderr)

    def test_module_utils_are_the_node_modules(self):
        # the role ships tripleo_ipsec/node/<m>.py to the nodes as its
        # module_utils/tripleo_ipsec_<m>.py: one file, linked
        node = os.path.join(TOP, 'tripleo_ipsec', 'node')
        utils = os.path.join(TOP, 'ansible', 'roles', 'tripleo_ipsec',
                             'module_utils')
        modules = sorted(n[:-3] for n in os.listdir(node)
                         if n.endswith('.py') and n != '__init__.py')
        self.assertEqual(['tripleo_ipsec_%s.py' % m for m in modules],
                         sorted(os.listdir(utils)))
        for module in modules:
            link = os.path.join(utils, 'tripleo_ipsec_%s.py' % module)
            self.assertEqual(os.path.join(node, module + '.py'),
                             os.path.realpath(link))
            # nodes get nothing from pip: the standard library, and each
            # other under the name the role gives them
            with open(link) as f:
                tree = ast.parse(f.read())
            for top in _imported(tree):
                self.assertTrue(
                    top in sys.stdlib_module_names or top in (
                        'tripleo_ipsec', 'ansible'),
                    '%s imports %s' % (module, top))


def _product_files():
    """Every file of the product: the package, the role, the templates."""
    found = []
    for top in ('tripleo_ipsec', os.path.join('ansible', 'roles'),
                'deployment', 'environments'):
        for root, _dirs, files in os.walk(os.path.join(TOP, top)):
            for name in sorted(files):
                path = os.path.join(root, name)
                # module_utils are links to tripleo_ipsec/node: once
                if not os.path.islink(path) and not name.endswith('.pyc'):
                    found.append(path)
    return found


def _repeated_blocks(paths, size):
    """Runs of ``size`` lines that stand in two places.

    Lines are compared stripped; blank and comment lines are left out.
    """
    seen, repeated = {}, []
    for path in paths:
        with open(path) as f:
            lines = [(n, line.strip()) for n, line in enumerate(f, 1)
                     if line.strip() and not line.strip().startswith('#')]
        for i in range(len(lines) - size + 1):
            key = tuple(text for _, text in lines[i:i + size])
            where = (os.path.relpath(path, TOP), lines[i][0])
            if key in seen and seen[key][0] != where[0] or (
                    key in seen and where[1] - seen[key][1] >= size):
                repeated.append((seen[key], where))
            seen.setdefault(key, where)
    return repeated


def _imported(tree):
    """The top-level package of every module an AST imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module.split('.')[0]


class TestPackaging(testtools.TestCase):

    def test_wheel_ships_the_role_and_templates(self):
        import zipfile
        if not os.path.exists(os.path.join(TOP, '.git')):
            self.skipTest('pbr versions from git')
        out = self.useFixture(fixtures.TempDir()).path
        result = subprocess.run(
            [sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
             '-w', out, TOP],
            capture_output=True, text=True, timeout=600)
        self.assertEqual(0, result.returncode, result.stderr)
        wheel = [n for n in os.listdir(out) if n.endswith('.whl')][0]
        with zipfile.ZipFile(os.path.join(out, wheel)) as zf:
            names = zf.namelist()
            role = [n.split('/data/share/ansible/roles/', 1)[1]
                    for n in names if '/data/share/ansible/roles/' in n]
            utils = [n for n in names if n.endswith(
                'module_utils/tripleo_ipsec_libreswan.py')][0]
            shipped = zf.read(utils).decode()
        # runtime code only: no lab, no simulator, no test
        packages = sorted({n.split('/')[0] for n in names
                           if '.dist-info/' not in n and '.data/' not in n})
        self.assertEqual(['tripleo_ipsec'], packages)
        self.assertEqual([], [n for n in names if 'lab' in n.split('/')
                              or n.endswith(('/heat.py', '/steps.py',
                                             '/synth.py'))])
        for path in ('tripleo_ipsec/tasks/main.yml',
                     'tripleo_ipsec/tasks/verify.yml',
                     'tripleo_ipsec/tasks/render.yml',
                     'tripleo_ipsec/tasks/probe.yml',
                     'tripleo_ipsec/library/tripleo_ipsec_probe.py',
                     'tripleo_ipsec/module_utils/tripleo_ipsec_wire.py',
                     'tripleo_ipsec/filter_plugins/tripleo_ipsec.py',
                     'tripleo_ipsec/library/tripleo_ipsec_render.py',
                     'tripleo_ipsec/library/tripleo_ipsec_pacemaker.py',
                     'tripleo_ipsec/module_utils/tripleo_ipsec_pacemaker.py',
                     'tripleo_ipsec/files/ocf/vip',
                     'tripleo_ipsec/library/tripleo_ipsec_apply.py',
                     'tripleo_ipsec/library/tripleo_ipsec_verify.py',
                     'tripleo_ipsec/action_plugins/tripleo_ipsec_apply.py',
                     'tripleo_ipsec/meta/argument_specs.yml',
                     'tripleo_ipsec/defaults/main.yml'):
            self.assertIn(path, role)
        self.assertIn('tripleo_ipsec/templates/conns.conf.j2', names)
        # the environment's relative registry path holds when installed
        share = [n.split('/data/share/openstack-tripleo-ipsec/', 1)[1]
                 for n in names if '/data/share/openstack-tripleo-ipsec/' in n]
        self.assertEqual(['deployment/ipsec/ipsec-baremetal-ansible.yaml',
                          'environments/ipsec.yaml',
                          'playbooks/tripleo-ipsec-verify.yaml'],
                         sorted(share))
        # the link became the module itself
        with open(os.path.join(TOP, 'tripleo_ipsec', 'node',
                               'libreswan.py')) as f:
            self.assertEqual(f.read(), shipped)

    def test_no_runtime_module_imports_the_lab_or_the_tests(self):
        product = os.path.join(TOP, 'tripleo_ipsec')
        walked = 0
        for root, _dirs, files in os.walk(product):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = os.path.join(root, name)
                with open(path) as f:
                    tree = ast.parse(f.read())
                walked += 1
                bad = {t for t in _imported(tree)
                       if t in ('tripleo_ipsec_lab', 'tests', 'bench')}
                self.assertEqual(set(), bad, path)
        self.assertGreater(walked, 10)

    def test_no_block_of_six_lines_is_repeated_in_the_product(self):
        blocks = _repeated_blocks(_product_files(), 6)
        self.assertEqual([], blocks)

    def test_a_repeated_block_is_found(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        body = ''.join('    value_%d = compute(%d)\n' % (i, i)
                       for i in range(6))
        for name in ('a.py', 'b.py'):
            with open(os.path.join(tmp, name), 'w') as f:
                f.write('def f():\n' + body + '    return 1\n')
        found = _repeated_blocks([os.path.join(tmp, 'a.py'),
                                  os.path.join(tmp, 'b.py')], 6)
        # every window of the shared run: the first starts at line 1
        self.assertEqual((('a.py', 1), ('b.py', 1)), tuple(
            (os.path.basename(p), n) for p, n in found[0]))

    def test_the_pipeline_core_reads_nothing(self):
        # sources reads files, Heat and tripleo-common; topology and plan
        # are pure: plain data in, plain data out
        for name in ('topology', 'plan'):
            with open(os.path.join(TOP, 'tripleo_ipsec', name + '.py')) as f:
                tree = ast.parse(f.read())
            imported = set(_imported(tree))
            self.assertEqual(set(), imported & {
                'yaml', 'json', 'tripleo_common', 'heatclient', 'openstack',
                'os', 'subprocess', 'socket'}, name)
            calls = {n.func.id for n in ast.walk(tree)
                     if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Name)}
            self.assertNotIn('open', calls, name)
