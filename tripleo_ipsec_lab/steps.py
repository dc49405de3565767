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

"""A config-download-style step runner for the service's ``role_data``.

config-download turns every service's ``role_data`` into one playbook that,
for each deployment step, runs the ``external_deploy_tasks`` on the
undercloud and then the ``deploy_steps_tasks`` on the overcloud nodes,
with ``step`` set.  This writes that playbook for our service alone, so the
tests and the lab deploy through the same task lists Heat resolved.
"""

import os

import yaml

STEPS = (1, 2, 3, 4, 5)


class _Dumper(yaml.SafeDumper):
    """Indents lists inside mappings, as ansible-lint's yaml rule wants."""

    def increase_indent(self, flow=False, indentless=False):
        return super(_Dumper, self).increase_indent(flow, False)


def plays(role_data, steps=STEPS, nodes='overcloud', undercloud='undercloud'):
    """The plays, in config-download's order."""
    result = []
    for step in steps:
        result.append({
            'name': 'External deployment step %d' % step,
            'hosts': undercloud, 'gather_facts': False,
            'any_errors_fatal': True, 'become': False,
            'vars': {'step': step},
            'tasks': list(role_data.get('external_deploy_tasks') or [])})
        result.append({
            'name': 'Overcloud deploy step tasks for %d' % step,
            'hosts': nodes, 'gather_facts': False,
            'any_errors_fatal': True,
            'vars': {'step': step},
            'tasks': list(role_data.get('deploy_steps_tasks') or [])})
    return [p for p in result if p['tasks']]


def write(role_data, directory, steps=STEPS, name='deploy_steps_playbook.yaml',
          **kwargs):
    """Write the playbook into ``directory``; returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, 'w') as f:
        f.write('---\n')
        yaml.dump(plays(role_data, steps, **kwargs), f, Dumper=_Dumper,
                  default_flow_style=False, sort_keys=False)
    return path
