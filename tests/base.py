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

"""Shared helpers: fixtures -> topology -> plan -> rendered trees."""

import json
import os
import shutil
import tempfile

import testtools
import yaml

from tripleo_ipsec import keys
from tripleo_ipsec.node import names
from tripleo_ipsec import options
from tripleo_ipsec import plan
from tripleo_ipsec import render
from tripleo_ipsec import sources

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'fixtures')
FIXTURE_FILES = {'stock': 'stock.json', 'composable': 'composable.yaml',
                 'spine_leaf': 'spine_leaf.json',
                 'dual_stack': 'dual_stack.yaml', 'excluded': 'excluded.json'}


def fixture_outputs(name):
    return sources.load_outputs(os.path.join(FIXTURES, FIXTURE_FILES[name]))


def fixture_cidrs(name):
    path = os.path.join(FIXTURES, '%s-net-cidr-map.yaml' % name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return yaml.safe_load(f)


def fixture_topology(name):
    return sources.topology_of(fixture_outputs(name),
                               fixture_cidrs(name))


def make_plan(topo, **opts):
    return plan.build(topo, options.Options(**opts))


class TestCase(testtools.TestCase):

    def tempdir(self):
        path = tempfile.mkdtemp(prefix='tripleo-ipsec-test-')
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    def master_key(self):
        return keys.create(os.path.join(self.tempdir(), 'master.key'))

    def render(self, the_plan, key=None):
        """Render into a temp dir; returns (out, key)."""
        key = key or self.master_key()
        out = os.path.join(self.tempdir(), 'out')
        render.write(the_plan, key, out)
        return out, key


def manifest(out, host):
    with open(os.path.join(out, host, names.MANIFEST)) as f:
        return json.load(f)


def tree(root):
    """{relative path: (permission bits, bytes)} of every file below root."""
    files = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as f:
                files[os.path.relpath(path, root)] = (
                    os.stat(path).st_mode & 0o7777, f.read())
    return files


def read_tree(root):
    """{relative path: text} of every file below root."""
    return {path: data.decode() for path, (_, data) in tree(root).items()}
