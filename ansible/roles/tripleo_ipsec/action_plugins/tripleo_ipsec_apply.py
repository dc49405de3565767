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
"""Reads a node's bundle on the controller and hands it to the module.

One task, one module run per node: the bundle's files travel as a module
argument that the module marks no_log, so no key reaches Ansible's output.
With ``agent_dir`` the VIPs' OCF agent travels along, from the role's
``files/ocf/vip``.
"""

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from tripleo_ipsec.node import names


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        src = args.pop('src', None)
        agent_dir = args.pop('agent_dir', None)
        args.setdefault('manifest', names.MANIFEST)
        if agent_dir:
            # the VIPs' OCF agent, from the role's files, in the same run
            source = self._find_needle('files', 'ocf/%s' % names.OCF_TYPE)
            with open(source) as f:
                args['agent'] = {'dest': os.path.join(agent_dir,
                                                      names.OCF_TYPE),
                                 'content': f.read()}
        if args.get('state', 'present') == 'present':
            if not src or not os.path.isdir(src):
                raise AnsibleActionFail('src must be the node\'s rendered '
                                        'bundle directory, not %r' % src)
            files = {}
            for dirpath, _, filenames in os.walk(src):
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    with open(path) as f:
                        content = f.read()
                    files[os.path.relpath(path, src)] = {
                        'mode': '%04o' % (os.stat(path).st_mode & 0o7777),
                        'content': content}
            args['files'] = files
        result.update(self._execute_module(
            module_name='tripleo_ipsec_apply', module_args=args,
            task_vars=task_vars))
        return result
