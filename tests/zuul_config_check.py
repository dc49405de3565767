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

"""Check zuul.d/ files with zuul's own config loader, offline.

Run with the python of a venv that has zuul (tools/test builds .venv-zuul)::

    .venv-zuul/bin/python tests/zuul_config_check.py zuul.d

Each file is read as Zuul reads a config file (its YAML loader: duplicate
keys refused, anchors within one file) and every job, project,
project-template, nodeset, secret and semaphore goes through the
voluptuous schema of zuul.configloader's parser for it.  No ZooKeeper and
no connections: whether parents, nodesets and templates exist is a
tenant-layout question this does not answer.  Prints one line per error,
``path:line: message``, and exits 1 if there was any.
"""

import os
import sys
import types


def check_file(path):
    import voluptuous
    from zuul import configloader
    from zuul import model

    source = model.SourceContext(
        'opendev.org/openstack/tripleo-ipsec', 'openstack/tripleo-ipsec',
        'gerrit', 'master', path)
    with open(path) as f:
        text = f.read()
    try:
        data = configloader.safe_load_yaml(text, source)
        unparsed = model.UnparsedConfig()
        unparsed.extend(data)
    except Exception as e:
        return ['%s: %s: %s' % (path, type(e).__name__, e)]
    pc = configloader.ParseContext(
        types.SimpleNamespace(connections={}), None, None, None)
    kinds = [('job', unparsed.jobs, configloader.JobParser.schema),
             ('project', unparsed.projects, pc.project_parser.schema),
             ('project-template', unparsed.project_templates,
              pc.project_template_parser.schema),
             ('nodeset', unparsed.nodesets, pc.nodeset_parser.getSchema()),
             ('secret', unparsed.secrets, pc.secret_parser.getSchema()),
             ('semaphore', unparsed.semaphores,
              pc.semaphore_parser.getSchema())]
    errors = []
    for kind, items, schema in kinds:
        for item in items:
            try:
                schema(item)
            except voluptuous.Invalid as e:
                mark = item.get('_start_mark')
                line = mark.line + 1 if mark else 0
                errors.append('%s:%d: %s %s: %s' % (
                    path, line, kind, item.get('name', ''), e))
    return errors


def main(args):
    paths = []
    for arg in args:
        if os.path.isdir(arg):
            paths += sorted(os.path.join(arg, n) for n in os.listdir(arg)
                            if n.endswith(('.yaml', '.yml')))
        else:
            paths.append(arg)
    if not paths:
        print('no zuul config files in %s' % ' '.join(args))
        return 1
    errors = []
    for path in paths:
        errors += check_file(path)
    for error in errors:
        print(error)
    if not errors:
        print('%d files OK: %s' % (len(paths), ' '.join(paths)))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
