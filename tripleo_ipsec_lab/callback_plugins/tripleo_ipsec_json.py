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

"""An stdout callback for the tests: one JSON document at the end.

{"stats": {host: {ok, changed, failures, unreachable, skipped}},
 "tasks": [{"name": ..., "hosts": {host: result}}]}
"""

import json
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: tripleo_ipsec_json
type: stdout
short_description: the tests' JSON summary
description: Prints every task's per-host results and the stats as JSON.
'''


class CallbackModule(CallbackBase):

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'tripleo_ipsec_json'

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.tasks = []

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.tasks.append({'name': task.get_name(), 'hosts': {},
                           'start': time.monotonic()})

    def _record(self, result, **flags):
        data = dict(result._result)
        data.update(flags)
        self.tasks[-1]['seconds'] = round(
            time.monotonic() - self.tasks[-1]['start'], 3)
        self.tasks[-1]['hosts'][result._host.get_name()] = data

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        summary = {h: stats.summarize(h) for h in sorted(stats.processed)}
        self._display.display(json.dumps(
            {'stats': summary, 'tasks': self.tasks}, default=str))
