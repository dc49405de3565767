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

"""Generated stack outputs, valid and hostile, through the whole pipeline.

Hypothesis changes the stock overcloud's outputs: a host's address on a
network, a host's name, a VIP's address or name, a network's name, each
drawn from valid forms and from the hostile ones (zone ids, mapped
addresses, newlines with ``key=value`` after them, non-ASCII, stray
characters).  Every draw is either refused with one ``Error`` line, or
rendered into a tree in which every line of every file is one the
templates write (the conf parsed back: only the templates' keys, values
of their kind), and which libreswan's own ``addconn --checkconfig``
accepts.
"""

import ipaddress
import os
import re
import shutil

import hypothesis
from hypothesis import strategies as st

from tests import base
from tests import pluto
from tripleo_ipsec.errors import Error
from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import plan
from tripleo_ipsec import render
from tripleo_ipsec import sources
from tripleo_ipsec_lab import synth

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tripleo_ipsec', 'templates')

# the keys the conn template writes, read from the template itself
with open(os.path.join(TEMPLATES, 'conns.conf.j2')) as _f:
    CONF_KEYS = set(re.findall(r'^\t([a-z]+)=', _f.read(), re.M))
CONF_KEYS.add(libreswan.syntax(4)['keyexchange'].split('=')[0])
ADDRESS_KEYS = {'left', 'right'}
SECRET = re.compile(r'(\S+) (\S+) : PSK "[A-Za-z0-9+/=]+"')

HOSTILE_TEXT = st.sampled_from([
    'fd00::d%eth0', 'fd00::d%eth0\nleftprotoport=udp', '::ffff:172.16.2.99',
    'fe80::1%\xe9', '172.16.2.99\nauto=ignore', '172.16.2.99 ', ' fd00::7',
    '172.16.2.099', '172.16.2.99/32', '', 'x', '\u0661\u0667\u0662.16.2.9',
    'overcloud-novacompute-0\n', 'storage\n', 'Storage', 'a' * 300,
    'internal_api\nalso=x', 'redis"', "red'is", 'ctl plane'])


def _address(draw, cidrs):
    kind = draw(st.sampled_from(['valid', 'valid', 'hostile', 'random']))
    if kind == 'valid' and cidrs:
        base_net = ipaddress.ip_network(cidrs[0])
        return str(base_net.network_address + draw(
            st.integers(min_value=100, max_value=250)))
    if kind == 'hostile':
        return draw(HOSTILE_TEXT)
    return draw(st.text(min_size=0, max_size=40))


@st.composite
def outputs(draw):
    """The stock outputs with one to three things changed."""
    data = synth.stack_outputs([synth.controller(3), synth.compute(2)])
    cidrs = synth.net_cidr_map()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        what = draw(st.sampled_from(['address', 'host', 'vip', 'vip name',
                                     'network']))
        role = draw(st.sampled_from(['Controller', 'Compute']))
        ips = data['RoleNetIpMap'][role]
        if what == 'address':
            net = draw(st.sampled_from(sorted(n for n in ips
                                              if n != 'ctlplane')))
            index = draw(st.integers(min_value=0, max_value=1))
            ips[net][index] = _address(draw, cidrs.get(net))
        elif what == 'host':
            hosts = data['RoleNetHostnameMap'][role]['ctlplane']
            index = draw(st.integers(min_value=0, max_value=1))
            hosts[index] = draw(st.one_of(HOSTILE_TEXT, st.text(
                max_size=30))) + '.ctlplane.localdomain'
        elif what == 'vip':
            name = draw(st.sampled_from(sorted(data['VipMap'])))
            data['VipMap'][name] = _address(draw, cidrs.get(name))
        elif what == 'vip name':
            name = draw(st.sampled_from(sorted(data['VipMap'])))
            data['VipMap'][draw(st.one_of(HOSTILE_TEXT, st.text(
                max_size=20)))] = data['VipMap'].pop(name)
        else:
            old = draw(st.sampled_from(['storage', 'storage_mgmt']))
            new = draw(st.one_of(HOSTILE_TEXT, st.text(max_size=20)))
            for role_nets in (data['RoleNetIpMap'],
                              data['RoleNetHostnameMap']):
                for nets in role_nets.values():
                    if old in nets and new not in nets:
                        nets[new] = nets.pop(old)
            if old in cidrs and new not in cidrs:
                cidrs[new] = cidrs.pop(old)
    return data, cidrs


class TestGeneratedOutputs(base.TestCase):

    def setUp(self):
        super().setUp()
        if not shutil.which('ipsec'):
            self.skipTest('libreswan is not installed '
                          '(apt-get install libreswan)')
        self.key = self.master_key()

    def assertTemplateLines(self, path):
        with open(path) as f:
            text = f.read()
        for line in text.split('\n'):
            if not line or line.startswith('#'):
                continue
            if path.endswith('.secrets'):
                match = SECRET.fullmatch(line)
                self.assertIsNotNone(match, '%s: %r' % (path, line))
                for address in match.groups():
                    self.assertNotIn('%', address, line)
                    self.assertEqual(str(ipaddress.ip_address(address)),
                                     address)
                continue
            if line.startswith('conn '):
                name = line[len('conn '):]
                self.assertRegex(name, r'\A[a-z0-9_.-]+\Z', path)
                self.assertTrue(name.startswith(names.PREFIX + '-'), name)
                continue
            self.assertTrue(line.startswith('\t'), '%s: %r' % (path, line))
            key, _, value = line[1:].partition('=')
            self.assertIn(key, CONF_KEYS, '%s: %r' % (path, line))
            self.assertRegex(value, r'\A[A-Za-z0-9_.:%+,-]+\Z', line)
            if key in ADDRESS_KEYS:
                # canonical, and no zone id (ipaddress keeps one)
                self.assertNotIn('%', value, line)
                self.assertEqual(str(ipaddress.ip_address(value)), value)

    @hypothesis.settings(max_examples=100, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(outputs())
    def test_refused_or_rendered_as_the_templates_write(self, drawn):
        data, cidrs = drawn
        try:
            the_plan = plan.build(
                sources.topology_of(data, cidrs), base.options.Options())
        except Error as exc:
            self.assertEqual(1, len(str(exc).splitlines()), str(exc))
            self.assertNotIn('Traceback', str(exc))
            return
        out = os.path.join(self.tempdir(), 'out')
        render.write(the_plan, self.key, out)
        tmp = self.tempdir()
        for host in the_plan.hosts:
            etc = os.path.join(out, host, names.IPSEC_D)
            for name in sorted(os.listdir(etc)):
                if name.endswith(('.conf', '.secrets')):
                    self.assertTemplateLines(os.path.join(etc, name))
            conf = os.path.join(tmp, 'ipsec.conf')
            with open(conf, 'w') as f:
                f.write('config setup\n\ninclude %s/*.conf\n' % etc)
            result = pluto.run(['ipsec', 'addconn', '--config', conf,
                                '--checkconfig'])
            self.assertEqual((0, ''), (result.returncode, result.stderr),
                             host)

    def test_a_line_the_template_did_not_write_is_found(self):
        # the parse-back check itself can fail: an injected key is caught
        path = os.path.join(self.tempdir(), 'tripleo-x.conf')
        with open(path, 'w') as f:
            f.write('conn tripleo-x\n\tleft=fd00::d\n\tleftprotoport=udp\n')
        self.assertRaises(AssertionError, self.assertTemplateLines, path)
        with open(path, 'w') as f:
            f.write('conn tripleo-x\n\tleft=fd00::d%eth0\n')
        self.assertRaises(AssertionError, self.assertTemplateLines, path)
