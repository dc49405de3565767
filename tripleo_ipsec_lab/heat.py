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

"""Resolve the service template's ``role_data`` with Heat's own engine.

Offline: python-heatclient reads the template and environment files as
``openstack overcloud deploy`` would, and openstack-heat's engine
validates the stack and resolves the ``role_data`` output, with no API,
database or keystone.  Used by the tests and the lab (openstack-heat is a
test and lab dependency, not a runtime one).
"""

import json
import logging
import os
import warnings

from tripleo_ipsec.errors import Error

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE_TEMPLATE = os.path.join(TOP, 'deployment', 'ipsec',
                                'ipsec-baremetal-ansible.yaml')
ENVIRONMENT = os.path.join(TOP, 'environments', 'ipsec.yaml')
SERVICE_TYPE = 'OS::TripleO::Services::Ipsec'

# what THT passes every service (a stock ServiceNetMap's relevant part)
STANDARD_PARAMETERS = {
    'ServiceNetMap': {'RedisNetwork': 'internal_api',
                      'OvnDbsNetwork': 'internal_api'},
    'ServiceData': {'net_cidr_map': {}},
    'RoleName': 'Controller',
    'RoleParameters': {},
    'EndpointMap': {},
}


def _engine():
    logging.disable(logging.WARNING)
    warnings.simplefilter('ignore')
    from heat.common import context
    from heat.engine import environment
    from heat.engine import resources
    from heat.engine import stack as stack_mod
    from heat.engine import template
    from heatclient.common import template_utils
    resources.initialise()
    return context, environment, stack_mod, template, template_utils


def _context(context):
    return context.RequestContext.from_dict({
        'tenant_id': 'tripleo-ipsec', 'username': 'tripleo-ipsec',
        'auth_token': 'offline', 'auth_url': 'http://127.0.0.1:5000/v3'})


def _stack(name, tpl, files, env, strict):
    """Validate a template as a stack, offline."""
    context, environment, stack_mod, template, _ = _engine()
    tmpl = template.Template(tpl, files=files,
                             env=environment.Environment(env))
    tmpl.validate()
    stk = stack_mod.Stack(_context(context), name, tmpl,
                          strict_validate=strict)
    stk.validate()
    return stk


def environment_files(env_paths=(ENVIRONMENT,)):
    """(files, environment) as heatclient builds them from -e files."""
    _, _, _, _, template_utils = _engine()
    return template_utils.process_multiple_environments_and_files(
        env_paths=list(env_paths))


def service_stack(parameters=None, env_paths=(ENVIRONMENT,)):
    """The service template as a stack, validated; its registry entry."""
    template_utils = _engine()[-1]
    env_files, env = environment_files(env_paths)
    registered = env.get('resource_registry', {}).get(SERVICE_TYPE)
    if not registered:
        raise Error('%s maps no %s' % (', '.join(env_paths), SERVICE_TYPE))
    path = registered[len('file://'):] if registered.startswith(
        'file://') else registered
    files, tpl = template_utils.get_template_contents(template_file=path)
    files.update(env_files)
    env = dict(env)
    env.pop('resource_registry', None)
    env['parameters'] = dict(STANDARD_PARAMETERS, **dict(
        env.get('parameter_defaults', {}), **(parameters or {})))
    # strict: parameter values are checked against their constraints (the
    # template has no client-backed constraint that would need a cloud)
    return _stack('tripleo-ipsec-offline', tpl, files, env, True), path


def role_data(parameters=None, env_paths=(ENVIRONMENT,)):
    """The fully resolved ``role_data``, as plain JSON data."""
    stk, _ = service_stack(parameters, env_paths)
    data = stk.outputs['role_data'].get_value()
    return json.loads(json.dumps(data, default=bytes.decode))


def wrapped_stack(env_paths=(ENVIRONMENT,)):
    """A top-level template using the service by its type, validated.

    With the environment file: the registry entry resolves and fits.
    """
    files, env = environment_files(env_paths)
    tpl = {'heat_template_version': 'wallaby',
           'resources': {'Ipsec': {'type': SERVICE_TYPE,
                                   'properties': STANDARD_PARAMETERS}},
           'outputs': {'role_data': {'value': {
               'get_attr': ['Ipsec', 'role_data']}}}}
    # not strict: the parent passes no values through its own parameters
    return _stack('tripleo-ipsec-wrapped', tpl, files, env, False)
