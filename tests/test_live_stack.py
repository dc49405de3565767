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

"""--stack: the outputs of a live stack, through the real client stack.

openstacksdk reads a clouds.yaml, keystoneauth makes the session and
python-heatclient asks Heat's REST API for the stack.  A real Heat API
needs keystone, a database and a message bus, so the endpoint here is a
small HTTP server on loopback answering ``GET /v1/<project>/stacks/<name>``
the way Heat's API does (``{"stack": {..., "outputs": [...]}}``, 404
otherwise); everything on the client side is real.
"""

import http.server
import json
import os
import subprocess
import sys
import threading

from tests import base
from tripleo_ipsec_lab import synth


class _HeatAPI(http.server.BaseHTTPRequestHandler):
    outputs = []

    def do_GET(self):
        if self.path.rstrip('/').endswith('/stacks/overcloud'):
            code, body = 200, {'stack': {'id': 'a1', 'stack_name': 'overcloud',
                                         'outputs': self.outputs}}
        else:
            code, body = 404, {'error': {'code': 404, 'message': 'not found',
                                         'title': 'Not Found'}}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class TestLiveStack(base.TestCase):

    def setUp(self):
        super(TestLiveStack, self).setUp()
        self.outputs = synth.stack_outputs(
            [synth.controller(3), synth.compute(2)])
        _HeatAPI.outputs = synth.as_heat_list(self.outputs)
        server = http.server.HTTPServer(('127.0.0.1', 0), _HeatAPI)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        work = self.tempdir()
        clouds = os.path.join(work, 'clouds.yaml')
        with open(clouds, 'w') as f:
            f.write('clouds:\n  undercloud:\n    auth_type: none\n'
                    '    orchestration_endpoint_override: '
                    'http://127.0.0.1:%d/v1/admin\n' % server.server_port)
        self.saved = os.path.join(work, 'outputs.json')
        with open(self.saved, 'w') as f:
            json.dump(self.outputs, f)
        self.env = dict(os.environ, OS_CLIENT_CONFIG_FILE=clouds)

    def cli(self, *args):
        return subprocess.run(
            [sys.executable, '-m', 'tripleo_ipsec.cli'] + list(args),
            capture_output=True, text=True, env=self.env, timeout=120)

    def test_plan_from_the_live_stack_equals_the_saved_outputs(self):
        live = self.cli('plan', '--stack', 'overcloud', '--os-cloud',
                        'undercloud', '-f', 'json')
        self.assertEqual(0, live.returncode, live.stderr)
        saved = self.cli('plan', '--stack-outputs', self.saved, '-f', 'json')
        self.assertEqual(0, saved.returncode, saved.stderr)
        self.assertEqual(json.loads(saved.stdout), json.loads(live.stdout))

    def test_missing_stack(self):
        result = self.cli('plan', '--stack', 'nope', '--os-cloud',
                          'undercloud')
        self.assertEqual(1, result.returncode)
        self.assertEqual(['tripleo-ipsec: error: stack nope not found'],
                         result.stderr.splitlines())

    def test_unknown_cloud(self):
        result = self.cli('plan', '--stack', 'overcloud', '--os-cloud',
                          'elsewhere')
        self.assertEqual(1, result.returncode)
        self.assertEqual(1, len(result.stderr.splitlines()), result.stderr)
        self.assertIn('stack overcloud', result.stderr)

    def test_stack_needs_a_cloud(self):
        result = self.cli('plan', '--stack', 'overcloud')
        self.assertEqual(['tripleo-ipsec: error: --stack needs --os-cloud'],
                         result.stderr.splitlines())
