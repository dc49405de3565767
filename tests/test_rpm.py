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

"""The RPMs an operator installs: packaging/rpm/ built with rpmbuild (the
RPM of the checkout's HEAD, as DLRN builds a commit) and checked with
rpmlint, both Debian's real tools."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import fixtures
import testtools

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RPM_DIR = os.path.join(TOP, 'packaging', 'rpm')
SPEC = os.path.join(RPM_DIR, 'python-tripleo-ipsec.spec')
LINT = ['rpmlint', '-c', os.path.join(RPM_DIR, 'rpmlint.toml'),
        '-r', os.path.join(RPM_DIR, 'rpmlintrc')]

UNDERCLOUD = 'python3-tripleo-ipsec'
AGENT = 'tripleo-ipsec-ocf-agent'
ROLE = '/usr/share/ansible/roles/tripleo_ipsec/'
SHARE = '/usr/share/openstack-tripleo-ipsec/'
OCF = '/usr/lib/ocf/resource.d/tripleo-ipsec/vip'
SITELIB = re.compile(r'^/usr/lib/python3\.\d+/site-packages/')
MODULE_UTILS = ('libreswan', 'names', 'pacemaker', 'wire')


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=600,
                          **kwargs)


class TestRPM(testtools.TestCase):
    """One build per process, shared by the tests (about 10 s)."""

    _top = None
    _result = None

    def setUp(self):
        super().setUp()
        for tool, package in (('rpmbuild', 'rpm'), ('rpmlint', 'rpmlint')):
            if not shutil.which(tool):
                self.skipTest('%s is not installed (apt-get install %s)'
                              % (tool, package))
        if not os.path.exists(os.path.join(TOP, '.git')):
            self.skipTest('pbr versions from git: no git checkout')
        cls = type(self)
        if cls._result is None:
            cls._top = tempfile.mkdtemp(prefix='tripleo-ipsec-rpm.')
            # the Python that runs the tests has pbr
            cls._result = _run(
                [os.path.join(RPM_DIR, 'build-rpm'), cls._top],
                env=dict(os.environ, PYTHON=sys.executable))
        self.assertEqual(0, self._result.returncode,
                         self._result.stdout[-3000:] + self._result.stderr)

    @classmethod
    def tearDownClass(cls):
        if cls._top:
            shutil.rmtree(cls._top, ignore_errors=True)
        super().tearDownClass()

    def _rpms(self):
        noarch = os.path.join(self._top, 'RPMS', 'noarch')
        rpms = {}
        for name in os.listdir(noarch):
            result = _run(['rpm', '-qp', '--qf', '%{NAME}',
                           os.path.join(noarch, name)])
            self.assertEqual(0, result.returncode, result.stderr)
            rpms[result.stdout] = os.path.join(noarch, name)
        return rpms

    def _query(self, package, *options):
        result = _run(['rpm', '-qp'] + list(options)
                      + [self._rpms()[package]])
        self.assertEqual(0, result.returncode, result.stderr)
        return result.stdout.splitlines()

    def _files(self, package):
        return self._query(package, '-l')

    def _modes(self, package):
        # rpm -qlvp: "-rwxr-xr-x 1 root root 14301 Dec 3 08:31 /path"
        return {line.split()[-1]: line.split()[0]
                for line in self._query(package, '-lv')}

    def test_rpmbuild_builds_the_undercloud_and_the_agent_packages(self):
        self.assertEqual({UNDERCLOUD, AGENT}, set(self._rpms()))

    def test_undercloud_package_holds_role_templates_command_library(self):
        modes = self._modes(UNDERCLOUD)
        files = {p for p, m in modes.items() if m.startswith('-')}
        for path in ('/usr/bin/tripleo-ipsec',
                     ROLE + 'tasks/main.yml',
                     ROLE + 'tasks/verify.yml',
                     ROLE + 'meta/argument_specs.yml',
                     ROLE + 'defaults/main.yml',
                     ROLE + 'library/tripleo_ipsec_apply.py',
                     ROLE + 'action_plugins/tripleo_ipsec_apply.py',
                     ROLE + 'filter_plugins/tripleo_ipsec.py',
                     ROLE + 'files/ocf/vip'):
            self.assertIn(path, files)
        # the environment's relative registry path holds when installed
        self.assertEqual(
            [SHARE + 'deployment/ipsec/ipsec-baremetal-ansible.yaml',
             SHARE + 'environments/ipsec.yaml',
             SHARE + 'playbooks/tripleo-ipsec-verify.yaml'],
            sorted(f for f in files if f.startswith(SHARE)))
        library = {SITELIB.sub('', f) for f in files if SITELIB.match(f)}
        for path in ('tripleo_ipsec/__init__.py', 'tripleo_ipsec/cli.py',
                     'tripleo_ipsec/node/libreswan.py',
                     'tripleo_ipsec/templates/conns.conf.j2'):
            self.assertIn(path, library)
        # the library and its metadata, nothing else in site-packages
        self.assertEqual({'tripleo_ipsec'},
                         {p.split('/')[0].split('-')[0] for p in library})
        self.assertTrue([f for f in files if f.startswith('/usr/share/doc/')
                         and f.endswith('/tripleo-ipsec.conf.sample')])
        self.assertTrue([f for f in files
                         if f.startswith('/usr/share/licenses/')
                         and f.endswith('/LICENSE')])

    def test_module_utils_are_the_node_modules_themselves(self):
        modes = self._modes(UNDERCLOUD)
        # no link at all (in git the module_utils are links)
        self.assertEqual([], [p for p, m in modes.items()
                              if m.startswith('l')])
        for name in MODULE_UTILS:
            path = ROLE + 'module_utils/tripleo_ipsec_%s.py' % name
            self.assertEqual('-rw-r--r--', modes[path])
        # and their content is tripleo_ipsec/node/'s, as in Source0
        extract = os.path.join(self._top, 'extract')
        os.makedirs(extract, exist_ok=True)
        rpm2cpio = subprocess.Popen(
            ['rpm2cpio', self._rpms()[UNDERCLOUD]], stdout=subprocess.PIPE)
        cpio = _run(['cpio', '-idm', '--quiet'], cwd=extract,
                    stdin=rpm2cpio.stdout)
        rpm2cpio.stdout.close()
        self.assertEqual(0, rpm2cpio.wait())
        self.assertEqual(0, cpio.returncode, cpio.stderr)
        sources = os.path.join(self._top, 'SOURCES')
        tarball = [n for n in os.listdir(sources) if n.endswith('.tar.gz')]
        with tarfile.open(os.path.join(sources, tarball[0])) as tar:
            top = tar.getnames()[0].split('/')[0]
            for name in MODULE_UTILS:
                node = tar.extractfile(
                    '%s/tripleo_ipsec/node/%s.py' % (top, name)).read()
                with open(os.path.join(
                        extract, ROLE.lstrip('/'), 'module_utils',
                        'tripleo_ipsec_%s.py' % name), 'rb') as f:
                    self.assertEqual(node, f.read())
        # the console script is for the target's python3, not the build's
        with open(os.path.join(extract, 'usr/bin/tripleo-ipsec')) as f:
            self.assertEqual('#!/usr/bin/python3 -s', f.readline().strip())

    def test_ocf_agent_is_where_pacemaker_looks_and_executable(self):
        self.assertEqual('-rwxr-xr-x', self._modes(AGENT)[OCF])
        self.assertNotIn(OCF, self._files(UNDERCLOUD))
        requires = self._query(AGENT, '--requires')
        for dep in ('/usr/sbin/ipsec', 'resource-agents', 'iproute'):
            self.assertIn(dep, requires)

    def test_undercloud_package_requires(self):
        requires = self._query(UNDERCLOUD, '--requires')
        names = {r.split()[0] for r in requires}
        for dep in ('python3-tripleo-common', 'python3-heatclient',
                    'python3-oslo-config', 'python3-cryptography',
                    'python3-jinja2', 'python3-pyyaml', 'python3-pbr',
                    'ansible-core', '/usr/bin/python3'):
            self.assertIn(dep, names)
        # the undercloud runs neither libreswan nor pacemaker
        self.assertEqual([], [r for r in names if re.search(
            'libreswan|ipsec$|pacemaker|resource-agents', r)])
        # nothing of the build machine (e.g. the .venv's python)
        self.assertEqual([], [r for r in names if r.startswith(
            ('/work', '/tmp', '/home', '/root')) or '.venv' in r])

    def test_no_lab_test_or_bench_code_in_any_package(self):
        for package in (UNDERCLOUD, AGENT):
            for path in self._files(package):
                parts = path.split('/')
                self.assertFalse(
                    {'tripleo_ipsec_lab', 'tests', 'bench', 'lab'}
                    & set(parts) or parts[-1].startswith('test_'), path)

    def test_rpmlint_spec_and_rpms_no_error_no_warning(self):
        result = _run(LINT + [SPEC] + sorted(self._rpms().values()))
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        # every accepted warning is filtered in rpmlintrc, with its reason
        self.assertIn(' 2 packages and 1 specfiles checked; 0 errors, '
                      '0 warnings,', result.stdout)


class TestRPMLintFails(testtools.TestCase):

    def test_rpmlint_reports_a_broken_spec(self):
        if not shutil.which('rpmlint'):
            self.skipTest('rpmlint is not installed (apt-get install rpmlint)')
        with open(SPEC) as f:
            text = f.read()
        # the first %endif gone: an unclosed %if
        broken = text.replace('\n%endif\n', '\n', 1)
        self.assertNotEqual(text, broken)
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            os.path.basename(SPEC))
        with open(path, 'w') as f:
            f.write(broken)
        result = _run(LINT + ['--ignore-unused-rpmlintrc', path])
        self.assertNotEqual(0, result.returncode, result.stdout)
        self.assertIn('E: specfile-error', result.stdout)
