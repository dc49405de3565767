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

"""zuul.d/ is accepted by zuul's own config loader, and what its jobs
point at exists: the playbooks (syntax-checked and linted) and the paths of
their files filters."""

import os
import re
import subprocess
import sys

import fixtures
import testtools
import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
ZUUL_D = os.path.join(TOP, 'zuul.d')
CHECK = os.path.join(TOP, 'tests', 'zuul_config_check.py')
# tools/test builds it (zuul is heavy: it lives in a venv of its own)
ZUUL_VENV = os.environ.get('TRIPLEO_IPSEC_ZUUL_VENV',
                           os.path.join(TOP, '.venv-zuul'))
ZUUL_PYTHON = os.path.join(ZUUL_VENV, 'bin', 'python')
PLAYBOOK_KEYS = ('pre-run', 'run', 'post-run', 'cleanup-run')


def _zuul_items():
    """(kind, item) of every file in zuul.d/, as plain YAML."""
    for name in sorted(os.listdir(ZUUL_D)):
        with open(os.path.join(ZUUL_D, name)) as f:
            for entry in yaml.safe_load(f):
                for kind, item in entry.items():
                    yield kind, item


def _jobs():
    return {item['name']: item for kind, item in _zuul_items()
            if kind == 'job'}


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class TestZuulConfigLoader(testtools.TestCase):

    def setUp(self):
        super().setUp()
        if not os.path.exists(ZUUL_PYTHON):
            self.skipTest('%s is missing: tools/test builds it (zuul==14.3.0)'
                          % ZUUL_PYTHON)

    def _check(self, path):
        return subprocess.run([ZUUL_PYTHON, CHECK, path], cwd=TOP,
                              capture_output=True, text=True, timeout=300)

    def test_zuul_accepts_every_file(self):
        result = self._check(ZUUL_D)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        names = sorted(n for n in os.listdir(ZUUL_D)
                       if n.endswith(('.yaml', '.yml')))
        self.assertEqual(sorted(os.listdir(ZUUL_D)), names)
        for name in names:
            self.assertIn('zuul.d/' + name, result.stdout)

    def test_zuul_refuses_a_misspelled_key(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(ZUUL_D, 'jobs.yaml')) as f:
            text = f.read()
        self.assertIn('\n    timeout: ', text)
        with open(os.path.join(tmp, 'jobs.yaml'), 'w') as f:
            f.write(text.replace('\n    timeout: ', '\n    timout: ', 1))
        with open(os.path.join(ZUUL_D, 'project.yaml')) as f:
            text = f.read()
        with open(os.path.join(tmp, 'project.yaml'), 'w') as f:
            f.write(text.replace('- tripleo-ipsec-lab\n',
                                 '- tripleo-ipsec-lab:\n'
                                 '            votin: false\n', 1))
        result = self._check(tmp)
        self.assertEqual(1, result.returncode, result.stdout + result.stderr)
        self.assertIn("extra keys not allowed @ data['timout']",
                      result.stdout)
        self.assertIn("['tripleo-ipsec-lab']['votin']", result.stdout)

    def test_zuul_refuses_a_duplicate_key(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(tmp, 'dup.yaml'), 'w') as f:
            f.write('- job:\n    name: a\n    voting: true\n'
                    '    voting: false\n')
        result = self._check(tmp)
        self.assertEqual(1, result.returncode, result.stdout + result.stderr)
        self.assertIn('YAMLDuplicateKeyError', result.stdout)


class TestZuulJobs(testtools.TestCase):

    def test_project_runs_only_defined_or_known_jobs(self):
        jobs = _jobs()
        used = set()
        for kind, item in _zuul_items():
            if kind != 'project':
                continue
            self.assertIn('openstack-python3-jobs', item['templates'])
            self.assertIn('publish-openstack-docs-pti', item['templates'])
            self.assertIn('release-notes-jobs-python3', item['templates'])
            for pipeline in ('check', 'gate'):
                for job in item[pipeline]['jobs']:
                    used.add(job if isinstance(job, str) else list(job)[0])
        # ours are defined here; the rest come from openstack-zuul-jobs
        self.assertEqual({'openstack-tox-linters'}, used - set(jobs))
        self.assertEqual(set(jobs), used & set(jobs))

    def test_deployment_jobs(self):
        jobs = _jobs()
        deploy = {n: j for n, j in jobs.items() if '-ovb-' in n}
        self.assertEqual(['tripleo-ipsec-ovb-3ctlr_1comp-ipv4',
                          'tripleo-ipsec-ovb-3ctlr_1comp-ipv6'],
                         sorted(deploy))
        # tripleo-ci OVB featuresets: 001 IPv4, 035 IPv6, both 3ctlr_1comp
        # with pacemaker and multiple-nics network isolation
        for name, featureset in (('ipv4', '001'), ('ipv6', '035')):
            job = deploy['tripleo-ipsec-ovb-3ctlr_1comp-' + name]
            self.assertTrue(job['parent'].endswith(
                '3ctlr_1comp-featureset' + featureset))
            self.assertEqual(featureset, job['vars']['featureset'])
            self.assertEqual('3ctlr_1comp', job['vars']['nodes'])
            self.assertIn('/usr/share/openstack-tripleo-ipsec/environments/'
                          'ipsec.yaml',
                          job['vars']['featureset_override']['extra_args'])
            self.assertEqual(['playbooks/deploy/post.yaml'],
                             job['post-run'])
        with open(os.path.join(TOP, 'playbooks', 'deploy',
                               'post.yaml')) as f:
            self.assertIn('playbooks/tripleo-ipsec-verify.yaml', f.read())
        # the package installs the environment where the jobs look for it
        with open(os.path.join(TOP, 'setup.cfg')) as f:
            self.assertIn('share/openstack-tripleo-ipsec/environments = '
                          'environments/*', f.read())

    def test_files_filters_match_real_paths(self):
        tracked = subprocess.run(
            ['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
            cwd=TOP, capture_output=True, text=True, check=True,
        ).stdout.split()
        stale = []
        for name, job in sorted(_jobs().items()):
            for key in ('files', 'irrelevant-files'):
                for pattern in _as_list(job.get(key)):
                    if not any(re.match(pattern, p) for p in tracked):
                        stale.append('%s %s %s' % (name, key, pattern))
        self.assertEqual([], stale)


class TestJobPlaybooks(testtools.TestCase):

    def _playbooks(self):
        books = set()
        for job in _jobs().values():
            for key in PLAYBOOK_KEYS:
                for book in _as_list(job.get(key)):
                    books.add(book if isinstance(book, str) else book['name'])
        return sorted(books)

    def _env(self):
        return dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(
            TOP, 'ansible', 'roles'), PATH=BIN + os.pathsep +
            os.environ.get('PATH', ''))

    def test_every_job_playbook_exists(self):
        books = self._playbooks()
        self.assertIn('playbooks/lab/run.yaml', books)
        self.assertEqual([], [b for b in books
                              if not os.path.isfile(os.path.join(TOP, b))])

    def test_every_job_playbook_passes_syntax_check(self):
        for book in self._playbooks():
            result = subprocess.run(
                [os.path.join(BIN, 'ansible-playbook'), '--syntax-check',
                 '-i', 'localhost,', book],
                cwd=TOP, capture_output=True, text=True, timeout=300,
                env=self._env())
            self.assertEqual(0, result.returncode,
                             book + result.stdout + result.stderr)

    def test_every_job_playbook_passes_ansible_lint(self):
        if not os.path.exists(os.path.join(TOP, '.git')):
            self.skipTest('ansible-lint needs a git checkout')
        # and the playbooks the job playbooks run in turn
        books = self._playbooks() + ['playbooks/tripleo-ipsec-verify.yaml']
        books = sorted(b for b in set(books)
                       if os.path.isfile(os.path.join(TOP, b)))
        result = subprocess.run(
            [os.path.join(BIN, 'ansible-lint'), '--offline', '--nocolor']
            + books, cwd=TOP, capture_output=True, text=True, timeout=600,
            env=self._env())
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
