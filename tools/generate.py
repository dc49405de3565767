#!/usr/bin/env python3
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

"""Write what is derived from the one declaration of the options.

``tripleo_ipsec/options.py`` declares every option once (``KNOBS``): the
oslo.config option, its Heat parameter, its one-line summary.  The CLI and
the role's render module read it at run time; the files that cannot import
it carry a generated block between two marker lines, which this rewrites:

- the role's ``meta/argument_specs.yml`` (render entry point),
  ``defaults/main.yml`` and ``tasks/render.yml``;
- the Heat service template's parameters and the role variables it sets;
- ``environments/ipsec.yaml``'s commented parameter_defaults;
- the OCF agent's default paths, from ``tripleo_ipsec/node/names.py``;
- the option table of README.rst and of the operator's guide.

    python tools/generate.py           rewrite the blocks
    python tools/generate.py --check   exit 1 naming every stale file

``etc/tripleo-ipsec.conf.sample`` comes from oslo-config-generator
(``tox -e genconfig``).
"""

import argparse
import os
import re
import shlex
import shutil
import sys

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from tripleo_ipsec.node import names  # noqa: E402
from tripleo_ipsec import options  # noqa: E402

BEGIN = 'BEGIN generated: options (tools/generate.py)'
END = 'END generated: options'
ROLE = os.path.join('ansible', 'roles', 'tripleo_ipsec')
TEMPLATE = os.path.join('deployment', 'ipsec', 'ipsec-baremetal-ansible.yaml')
HEAT_TYPES = {'ListOpt': 'comma_delimited_list', 'StrOpt': 'string',
              'IntOpt': 'number', 'DictOpt': 'json', 'BoolOpt': 'boolean'}


def _flow(value):
    """One YAML scalar or flow collection, as YAML would write it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return text.strip().removesuffix('...').strip()


def _wrap(text, width, indent):
    words, lines, line = text.split(), [], ''
    for word in words:
        if line and len(line) + 1 + len(word) > width - len(indent):
            lines.append(line)
            line = word
        else:
            line = '%s %s' % (line, word) if line else word
    lines.append(line)
    return [indent + line for line in lines]


def _heat_knobs():
    return [k for k in options.KNOBS if k.heat]


def argument_specs():
    lines = []
    for name, entry in options.argument_spec().items():
        lines.append('%s%s:' % (options.ROLE_PREFIX, name))
        for key in ('type', 'elements', 'choices', 'default'):
            if key in entry:
                lines.append('  %s: %s' % (key, _flow(entry[key])))
        lines.append('  description: >-')
        lines += _wrap(entry['description'] + '.', 72, '    ')
    return lines


def defaults():
    return ['%s: %s' % (k.role_var, _flow(k.default)) for k in options.KNOBS]


def role_names():
    return ['%sctlsocket: %s' % (options.ROLE_PREFIX, names.CTLSOCKET),
            '%smanifest: %s' % (options.ROLE_PREFIX, names.MANIFEST)]


def render_task():
    return ['%s: "{{ %s }}"' % (k.name, k.role_var) for k in options.KNOBS]


def heat_parameters():
    lines = []
    for knob in _heat_knobs():
        kind = HEAT_TYPES[type(knob.opt).__name__]
        default = knob.default
        if kind == 'string' and knob.choices:
            default = str(default)
        lines += ['%s:' % knob.heat, '  default: %s' % _flow(default),
                  '  description: >-']
        lines += _wrap('%s (tripleo-ipsec option %s.)' % (
            knob.opt.help, knob.name), 76, '    ')
        lines.append('  type: %s' % kind)
        constraints = []
        if knob.choices:
            constraints.append('    - allowed_values: %s'
                               % _flow(list(knob.choices)))
        if getattr(knob.opt.type, 'min', None) is not None:
            constraints.append('    - range: {min: %d}' % knob.opt.type.min)
        if constraints:
            lines += ['  constraints:'] + constraints
    return lines


def heat_vars():
    return ['%s: {get_param: %s}' % (k.role_var, k.heat)
            for k in _heat_knobs()]


def environment():
    lines = []
    for knob in _heat_knobs():
        lines += _wrap(knob.summary[0].upper() + knob.summary[1:] + '.', 70,
                       '# ')
        lines.append('%s: %s' % (knob.heat, _flow(knob.default)))
    return ['#   ' + line for line in lines]


def readme():
    lines = ['.. list-table::', '   :header-rows: 1', '',
             '   * - option', '     - command line', '     - role variable',
             '     - Heat parameter', '     - default', '     - meaning']
    for knob in options.KNOBS:
        default = knob.default
        if isinstance(default, list):
            default = ','.join(default)
        lines += ['   * - ``%s``' % knob.name,
                  '     - ``--%s``' % knob.name.replace('_', '-'),
                  '     - ``%s``' % knob.role_var,
                  '     - ``%s``' % knob.heat if knob.heat else
                  '     - (ServiceNetMap)',
                  '     - ``%s``' % default if default not in ({}, '') else
                  '     - (none)',
                  '     - %s' % knob.summary]
    return lines


def agent_names():
    """The OCF agent's default manifest and control socket, as sh.

    Its meta-data's defaults expand them too: no literal path in the agent.
    """
    return ['DEFAULT_MANIFEST=%s' % shlex.quote('/' + names.MANIFEST),
            'DEFAULT_CTLSOCKET=%s' % shlex.quote(names.CTLSOCKET)]


# file -> [(block id, lines)]; a file may hold several blocks
TARGETS = {
    os.path.join(ROLE, 'files', 'ocf', 'vip'): [('names', agent_names)],
    os.path.join(ROLE, 'meta', 'argument_specs.yml'): [
        ('render', argument_specs)],
    os.path.join(ROLE, 'defaults', 'main.yml'): [('defaults', defaults),
                                                 ('names', role_names)],
    os.path.join(ROLE, 'tasks', 'render.yml'): [('render', render_task)],
    TEMPLATE: [('parameters', heat_parameters), ('vars', heat_vars)],
    os.path.join('environments', 'ipsec.yaml'): [
        ('parameter_defaults', environment)],
    'README.rst': [('table', readme)],
    os.path.join('doc', 'source', 'operator.rst'): [('table', readme)],
}


def rewrite(text, block, lines, path):
    """Replace the block between the markers, at the markers' indent."""
    pattern = re.compile(
        r'^(?P<indent>[ \t]*)(?P<lead>#|\.\.) %s: %s\n.*?^(?P=indent)'
        r'(?P=lead) %s: %s\n' % (re.escape(BEGIN), re.escape(block),
                                 re.escape(END), re.escape(block)),
        re.S | re.M)
    match = pattern.search(text)
    if not match:
        raise SystemExit('%s: no block %r (markers "%s: %s" ... "%s: %s")'
                         % (path, block, BEGIN, block, END, block))
    indent, lead = match.group('indent'), match.group('lead')
    body = ''.join((indent + line).rstrip() + '\n' for line in lines)
    if lead == '..':
        # an RST comment swallows what is indented under it: keep blank
        # lines around the generated text
        body = '\n' + body + '\n'
    new = '%s%s %s: %s\n%s%s%s %s: %s\n' % (
        indent, lead, BEGIN, block, body, indent, lead, END, block)
    return text[:match.start()] + new + text[match.end():]


def generate(top=TOP):
    """{path: (current text, wanted text)}."""
    result = {}
    for path, blocks in TARGETS.items():
        with open(os.path.join(top, path)) as f:
            current = f.read()
        wanted = current
        for block, make in blocks:
            wanted = rewrite(wanted, block, make(), path)
        result[path] = (current, wanted)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='change nothing; exit 1 if a file is stale')
    args = parser.parse_args(argv)
    stale = []
    for path, (current, wanted) in sorted(generate().items()):
        if current == wanted:
            continue
        stale.append(path)
        if not args.check:
            tmp = os.path.join(TOP, path + '.tmp')
            with open(tmp, 'w') as f:
                f.write(wanted)
            # the OCF agent stays executable
            shutil.copymode(os.path.join(TOP, path), tmp)
            os.replace(tmp, os.path.join(TOP, path))
    if args.check and stale:
        sys.stderr.write('stale generated blocks (run python '
                         'tools/generate.py): %s\n' % ', '.join(stale))
        return 1
    for path in stale:
        print('rewrote %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
