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

"""A simulated overcloud in the lab guest, deployed through the real path.

Lab topology -> stack outputs as Heat gives them (``synth``) ->
tripleo-common's inventory -> Heat's engine resolves ``role_data`` from
``environments/ipsec.yaml`` (``heat``) -> config-download's step playbook
(``steps``) -> ansible-playbook: external tasks on the undercloud (this
machine, where the Python-heavy rendering runs), node tasks on the lab's
nodes (network namespaces in the guest, reached through ``guest.py``).

Every network is a bridge in the guest; every node is a namespace with one
interface per network, its own /etc (``/etc/netns/<node>``) and its own
pluto.  The controllers' cluster is a CIB file the deploy's pcs task edits.
"""

import concurrent.futures
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time

import yaml

from tripleo_ipsec.node import libreswan
from tripleo_ipsec.node import names
from tripleo_ipsec import options
from tripleo_ipsec import plan
from tripleo_ipsec import sources
from tripleo_ipsec_lab import certs
from tripleo_ipsec_lab import heat
from tripleo_ipsec_lab import steps
from tripleo_ipsec_lab import synth

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
ROLES = os.path.join(TOP, 'ansible', 'roles')
# where the role installs our OCF agent on the lab's nodes, in the guest
OCF_DIR = os.path.join('/usr/lib/ocf/resource.d', names.OCF_PROVIDER)
LIBEXEC = '/usr/libexec/ipsec'
# libreswan's own unit, as the package installed it (stop_pluto)
IPSEC_UNIT = '/lib/systemd/system/ipsec.service'
# the MTU of the guest's veths and bridges (the kernel's default)
LINK_MTU = 1500
MODULES = ('bridge', 'veth', 'ipv6', 'af_packet', 'xfrm_user', 'xfrm_algo',
           'esp4', 'esp6', 'xfrm4_tunnel', 'xfrm6_tunnel', 'tunnel4',
           'tunnel6', 'aead', 'gcm', 'ghash_generic', 'ctr', 'seqiv',
           'echainiv', 'authenc', 'xfrm_ipcomp', 'ipcomp', 'ipcomp6',
           'deflate')


def run_playbook(playbook, inventory, work, *args, timeout=1200):
    """ansible-playbook with a JSON summary; returns (rc, stats, data)."""
    env = dict(os.environ, ANSIBLE_ROLES_PATH=ROLES,
               ANSIBLE_STDOUT_CALLBACK='tripleo_ipsec_json',
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, 'callback_plugins'),
               ANSIBLE_LOCAL_TEMP=os.path.join(work, 'ansible', 'local'),
               ANSIBLE_REMOTE_TEMP=os.path.join(work, 'ansible', 'remote'),
               ANSIBLE_PIPELINING='True', ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOST_KEY_CHECKING='0',
               ANSIBLE_PYTHON_INTERPRETER='auto_silent')
    bin_dir = os.path.dirname(sys.executable)
    result = subprocess.run(
        [os.path.join(bin_dir, 'ansible-playbook'), '-i', inventory,
         '-f', '20', playbook] + list(args),
        capture_output=True, text=True, env=env, cwd=TOP, timeout=timeout)
    try:
        data = json.loads(result.stdout)
    except ValueError:
        raise RuntimeError('ansible-playbook: rc %d: %s %s'
                           % (result.returncode, result.stdout[-2000:],
                              result.stderr[-2000:]))
    return result.returncode, data['stats'], data


def by_task(data):
    """{task name: {host: [results]}} of the tasks that ran."""
    results = {}
    for task in data['tasks']:
        for host, result in task['hosts'].items():
            if not result.get('skipped'):
                results.setdefault(task['name'].split(' : ')[-1], {}) \
                    .setdefault(host, []).append(result)
    return results


def failures(data):
    return [(t['name'], h, r.get('msg')) for t in data['tasks']
            for h, r in t['hosts'].items() if r.get('failed')]


def make_cib(path, vips, controllers, env=None):
    """A CIB file of the controllers with THT's IPaddr2 VIP resources."""
    env = dict(env or os.environ, CIB_file=path)

    def run_ok(args):
        result = subprocess.run(args, capture_output=True, text=True, env=env,
                                timeout=120)
        if result.returncode:
            raise RuntimeError('%s: %s' % (' '.join(args), result.stderr))
        return result.stdout
    with open(path, 'w') as f:
        f.write(run_ok(['cibadmin', '--empty']))
    run_ok(['pcs', '-f', path, 'property', 'set', 'stonith-enabled=false'])
    for i, node in enumerate(controllers, 1):
        run_ok(['cibadmin', '-C', '-o', 'nodes', '-X',
                '<node id="%d" uname="%s"/>' % (i, node)])
    for vip in vips:
        run_ok(['pcs', '-f', path, 'resource', 'create',
                names.vip_ip_resource(vip.address), 'ocf:heartbeat:IPaddr2',
                'ip=%s' % vip.address, 'cidr_netmask=32', 'op', 'monitor',
                'interval=10s'])


def unit_lines(text, key, before=()):
    """A unit's KEY lines (ExecStopPost, ...) once TEXT is read on BEFORE.

    TEXT: the unit, or a drop-in of it; an empty ``KEY=`` resets the
    lines, as in systemd.
    """
    lines = list(before)
    for line in text.splitlines():
        if line.startswith(key + '='):
            value = line.split('=', 1)[1]
            lines = lines + [value] if value else []
    return lines


def run_unit_lines(guest, netns, lines, status='0', ctlsocket=None):
    """Run a unit's command LINES in node NETNS of GUEST, as systemd does.

    With EXIT_STATUS STATUS (``0``: pluto shut down cleanly); whack
    (libreswan.WHACK) talks to the node's pluto at CTLSOCKET, if given.
    A line that fails, unless marked ``-``, stops the rest, as in
    systemd; here it raises, naming the line.  Returns the ``-`` lines
    that failed, each with what it said: [(line, stderr), ...].
    """
    failed = []
    for line in lines:
        args = shlex.split(line.lstrip('-'))
        if ctlsocket and args[0] == libreswan.WHACK:
            args[1:1] = ['--ctlsocket', ctlsocket]
        result = guest.run(['env', 'EXIT_STATUS=' + status] + args,
                           netns=netns, check=False)
        if result.returncode and not line.startswith('-'):
            raise RuntimeError('%s: %s failed: %s' % (
                netns, line, result.stderr.strip()))
        if result.returncode:
            failed.append((line, result.stderr.strip()))
    return failed


SERVICE_KEYS = ('ExecStop', 'ExecStartPost', 'ExecStopPost')


def service_lines(dropin=''):
    """ipsec.service's lines as DROPIN (a drop-in's text) changes them.

    {key: [command, ...]} for SERVICE_KEYS, from libreswan's own unit
    (IPSEC_UNIT: the package's on this machine).
    """
    with open(IPSEC_UNIT) as f:
        unit = f.read()
    return {key: unit_lines(dropin, key, unit_lines(unit, key))
            for key in SERVICE_KEYS}


def shutdown_pluto(guest, netns, ctlsocket, lines=None, timeout=30):
    """Shut NETNS's pluto down as ipsec.service does; wait until it is gone.

    LINES (service_lines; by default ``whack --shutdown`` alone): their
    ExecStop, which must be whack's shutdown (its options as the drop-in
    gives them), pointed at CTLSOCKET; once pluto's pid file (beside
    CTLSOCKET, in its rundir) is gone, the ExecStopPost lines with the
    exit status that stop gives: 12 when pluto leaves its state.  Returns
    that status.
    """
    lines = lines or {'ExecStop': [libreswan.UNIT_STOP], 'ExecStopPost': []}
    stop = lines['ExecStop']
    if len(stop) != 1 or not stop[0].startswith(libreswan.UNIT_STOP):
        raise RuntimeError('%s: ExecStop %r is not whack --shutdown'
                           % (netns, stop))
    run_unit_lines(guest, netns, stop, ctlsocket=ctlsocket)
    pidfile = os.path.join(os.path.dirname(ctlsocket), 'pluto.pid')
    deadline = time.monotonic() + timeout
    while guest.run(['test', '-e', pidfile], netns=netns,
                    check=False).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError('%s: pluto did not stop' % netns)
        time.sleep(0.05)
    status = '12' if '--leave-state' in stop[0].split() else '0'
    run_unit_lines(guest, netns, lines['ExecStopPost'], status)
    return status


class Overcloud(object):
    """The lab's overcloud: nodes in GUEST, deployed with Ansible."""

    def __init__(self, guest, work, controllers=3, computes=2,
                 networks=None, opts=None):
        self.guest = guest
        self.work = work
        self.controllers = controllers
        self.computes = computes
        self.networks = dict(networks or synth.DEFAULT_NETWORKS)
        self.opts = opts or options.Options()
        self.nodes = {}            # name -> {netns, ctlsocket, python}
        self.ca = None             # the lab's CA, once auth cert is used
        self.bridges = {}          # network -> bridge in the guest
        # THT hands every service the networks' CIDRs in ServiceData
        self.parameters = {}
        self.role_data = heat.role_data(
            {'ServiceData': {'net_cidr_map': self.net_cidr_map()}})
        self.cib = os.path.join(work, 'cib.xml')
        for sub in ('bin', 'logs', 'ansible'):
            os.makedirs(os.path.join(work, sub), exist_ok=True)
        self.refresh()

    # -- what Heat would say ----------------------------------------------
    def configure(self, **parameters):
        """Deploy with these Heat parameters from now on.

        Heat's engine resolves them into the role's variables; the lab's
        own plan (what it expects on the wire) takes the same values, as
        the options they set.
        """
        self.parameters.update(parameters)
        self.role_data = heat.role_data(dict(
            self.parameters,
            ServiceData={'net_cidr_map': self.net_cidr_map()}))
        by_heat = {k.heat: k for k in options.KNOBS if k.heat}
        values = {by_heat[name].name: tuple(value)
                  if isinstance(value, list) else value
                  for name, value in self.parameters.items()}
        self.opts = dataclasses.replace(options.Options(), **values)
        self.refresh()

    def refresh(self):
        self.outputs = synth.stack_outputs(
            [synth.controller(self.controllers),
             synth.compute(self.computes)], self.networks)
        self.topology = sources.topology_of(self.outputs, self.net_cidr_map(),
                                            net_mtu_map=self.net_mtu_map())
        self.plan = plan.build(self.topology, self.opts)

    def net_mtu_map(self):
        """network_data's mtu of every network: the guest's links'."""
        return {net: LINK_MTU for net in self.networks}

    def net_cidr_map(self):
        return synth.net_cidr_map(self.networks)

    def protected(self):
        """The networks tripleo-ipsec encrypts, as the plan says."""
        return list(self.plan.networks)

    # -- the guest side ---------------------------------------------------
    def _script(self, lines, timeout=300):
        return self.guest.run(['/bin/sh', '-ec', '\n'.join(lines)],
                              timeout=timeout)

    def build(self):
        """Bridges, nodes and plutos for every host not built yet."""
        lines, root = [], []      # shell lines; ``ip -batch`` lines
        if not self.bridges:
            lines.append('modprobe -a %s' % ' '.join(MODULES))
            # instantiate the GCM template once, so the first SA does not
            # wait for the kernel's crypto module look-ups
            lines.append("ip xfrm state add src 127.0.0.1 dst 127.0.0.2 "
                         "proto esp spi 0x1 mode tunnel aead "
                         "'rfc4106(gcm(aes))' "
                         "0x0102030405060708091011121314151617181920 128")
            lines.append('ip xfrm state flush')
        for i, net in enumerate(sorted(self.networks)):
            if net in self.bridges:
                continue
            self.bridges[net] = 'labbr%d' % i
            root += ['link add %s type bridge' % self.bridges[net],
                     'link set %s up' % self.bridges[net]]
        new = [h for h in self.topology.hosts if h.name not in self.nodes]
        inside = {}               # netns -> its ``ip -batch`` lines
        for host in new:
            index = len(self.nodes)
            ns = host.name
            rundir = '/run/pluto-%s' % ns
            etc = '/etc/netns/%s' % ns
            self.nodes[host.name] = {
                'netns': ns, 'rundir': rundir,
                'ctlsocket': os.path.join(rundir, 'pluto.ctl'),
                # the node's modules reach its certmonger (auth cert)
                'python': self.guest.python_wrapper(
                    ns, os.path.join(self.work, 'bin', ns + '-python'),
                    env=certs.node_env(ns))}
            # its own /etc/systemd: the apply module writes the ipsec
            # service's drop-in there (the guest's /etc is the host's)
            lines += ['mkdir -p %s/ipsec.d %s/systemd %s' % (etc, etc, rundir),
                      "printf 'config setup\\n\\ninclude /etc/ipsec.d/*.conf"
                      "\\n' > %s/ipsec.conf" % etc,
                      "printf 'include /etc/ipsec.d/*.secrets\\n' > "
                      "%s/ipsec.secrets" % etc,
                      'certutil -N -d sql:%s/ipsec.d --empty-password' % etc]
            root.append('netns add %s' % ns)
            inside[ns] = ['link set lo up']
            for j, net in enumerate(sorted(self.networks)):
                if net not in host.addresses:
                    continue
                veth = 'n%dv%d' % (index, j)
                dev = net[:15]
                address = host.addresses[net]
                root += ['link add %s type veth peer name %s netns %s'
                         % (veth, dev, ns),
                         'link set %s master %s up'
                         % (veth, self.bridges[net])]
                inside[ns] += ['addr add %s/%d dev %s%s' % (
                    address, self._prefix(net, address), dev,
                    ' nodad' if ':' in address else ''),
                    'link set %s up' % dev]
        lines += ["ip -batch - <<'EOF'"] + root + ['EOF']
        for ns, batch in inside.items():
            lines += ["ip -n %s -batch - <<'EOF'" % ns] + batch + ['EOF']
        self._script(lines)
        self.parallel_start([h.name for h in new])
        if self.ca:
            self.parallel(self.ca.start_certmonger, [h.name for h in new])
        return [h.name for h in new]

    def enable_certs(self, validity='30d'):
        """The lab's CA, and a certmonger with it in every node.

        A CA the deployment owns, registered on every node as THT's nodes
        have IPA's: the nodes share its trust anchor.
        """
        if not self.ca:
            self.ca = certs.LabCA(self.guest, self.work, validity=validity)
            self.parallel(self.ca.start_certmonger, sorted(self.nodes))
        return self.ca

    @staticmethod
    def parallel(func, names):
        """{name: func(name)}, the calls side by side (guest requests)."""
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return dict(zip(names, pool.map(func, names)))

    def parallel_start(self, names, config=None, secrets=None):
        """Start the plutos of NAMES side by side."""
        self.parallel(lambda n: self.start_pluto(n, config, secrets), names)

    def _prefix(self, net, address):
        import ipaddress
        ip = ipaddress.ip_address(address)
        for cidr in self.networks[net]:
            network = ipaddress.ip_network(cidr)
            if ip in network:
                return network.prefixlen
        raise ValueError('%s is in none of %s' % (address, net))

    def service_lines(self, name):
        """ipsec.service's lines for node NAME (service_lines).

        As the node's drop-in (names.SERVICE_DROPIN) changes them, when
        the deploy installed one.
        """
        dropin = os.path.join('/etc/netns', name, os.path.relpath(
            names.SERVICE_DROPIN, 'etc'))
        found = self.guest.run(['cat', dropin], check=False)
        return service_lines(found.stdout if found.returncode == 0 else '')

    def start_pluto(self, name, config=None, secrets=None, timeout=60,
                    as_service=False):
        """Start NAME's pluto as the ipsec service would.

        Returns once pluto listens for IKE on every address of the node
        (once it has loaded its conns).  AS_SERVICE: then the service's
        ExecStartPost lines (service_lines); returns them.
        """
        node = self.nodes[name]
        self.guest.run(
            [os.path.join(LIBEXEC, 'pluto'), '--config',
             config or '/etc/ipsec.conf', '--secretsfile',
             secrets or '/etc/ipsec.secrets', '--nssdir',
             '/etc/ipsec.d', '--rundir', node['rundir'], '--logfile',
             os.path.join(self.work, 'logs', 'pluto-%s.log' % name)],
            netns=node['netns'])
        host = next(h for h in self.topology.hosts if h.name == name)
        want = {('[%s]:500' if ':' in a else '%s:500') % a
                for a in host.addresses.values()}
        deadline = time.monotonic() + timeout
        while True:
            out = self.whack(name, '--status', check=False).stdout
            listening = {line.split()[-1] for line in out.splitlines()
                         if line.startswith('000 interface ')}
            if want <= listening:
                break
            if time.monotonic() > deadline:
                raise RuntimeError('pluto of %s does not listen on %s'
                                   % (name, sorted(want - listening)))
            time.sleep(0.05)
        post = self.service_lines(name)['ExecStartPost'] if as_service \
            else []
        failed = run_unit_lines(self.guest, node['netns'], post,
                                ctlsocket=node['ctlsocket'])
        if failed:
            raise RuntimeError('%s: ExecStartPost failed: %r' % (name,
                                                                 failed))
        return post

    def stop_pluto(self, name, timeout=30, as_service=False):
        """Shut NAME's pluto down and wait until it is gone.

        AS_SERVICE: as libreswan's ipsec.service does, with the node's
        drop-in (shutdown_pluto).  Returns the lines run: {key: [...]}.
        """
        node = self.nodes[name]
        lines = self.service_lines(name) if as_service else None
        shutdown_pluto(self.guest, node['netns'], node['ctlsocket'], lines,
                       timeout)
        if lines:
            lines.pop('ExecStartPost')
        return lines or {}

    def whack(self, name, *args, check=True, timeout=60):
        node = self.nodes[name]
        return self.guest.run(
            [os.path.join(LIBEXEC, 'whack'), '--ctlsocket',
             node['ctlsocket']] + list(args), netns=node['netns'],
            timeout=timeout, check=check)

    # -- the deploy -------------------------------------------------------
    def connection_vars(self):
        return {name: {'ansible_connection': 'local',
                       'ansible_python_interpreter': node['python'],
                       'tripleo_ipsec_ctlsocket': node['ctlsocket'],
                       # the guest's / is the host's, read-only: libreswan
                       # is there; the lab starts pluto as the service would
                       'tripleo_ipsec_manage_package': False,
                       'tripleo_ipsec_manage_service': False,
                       # the NSS database each node's pluto reads
                       'tripleo_ipsec_nssdir': '/etc/ipsec.d',
                       # the guest has one CPU: under the rotation's
                       # pingers, a controller's 8 RSA keys and requests
                       # took over the role's 300 s
                       'tripleo_ipsec_cert_timeout': 1800,
                       'tripleo_ipsec_cib_file': self.cib}
                for name, node in self.nodes.items()}

    def inventory(self):
        """tripleo-common's inventory, pointed at the lab's nodes."""
        path = os.path.join(self.work, 'tripleo-ansible-inventory.yaml')
        with sources.quiet():
            sources.tripleo_inventory(
                self.outputs, ansible_ssh_user='tripleo-admin').\
                write_static_inventory(path)
        with open(path) as f:
            inv = yaml.safe_load(f)
        connection = self.connection_vars()
        mtus = self.net_mtu_map()
        for group in inv.values():
            role_vars = group.get('vars') or {}
            if 'tripleo_role_name' in role_vars:
                # what tripleo-common adds from Neutron: network_data's mtu
                role_vars.update(
                    ('%s_mtu' % net, mtus[net])
                    for net in role_vars.get('tripleo_role_networks') or ()
                    if net in mtus)
            for name, hvars in (group.get('hosts') or {}).items():
                if name in connection:
                    hvars.update(connection[name])
        with open(path, 'w') as f:
            yaml.safe_dump(inv, f)
        return path

    def global_vars(self):
        path = os.path.join(self.work, 'global_vars.yaml')
        with open(path, 'w') as f:
            yaml.safe_dump({'net_vip_map': self.outputs['VipMap'],
                            'net_cidr_map': self.net_cidr_map()}, f)
        return path

    def deploy(self, *args, step_list=steps.STEPS):
        """Run config-download's step playbook; (rc, stats, data)."""
        if not os.path.exists(self.cib):
            # THT's VIPs; the role installs our agent in the guest (its
            # overlay: nothing reaches the host's /usr/lib/ocf) before it
            # runs pcs there, which checks the agent's metadata
            make_cib(self.cib, self.plan.vips,
                     [h.name for h in self.topology.hosts
                      if h.vip_holder])
        playbook = steps.write(self.role_data, self.work, step_list)
        return run_playbook(playbook, self.inventory(), self.work,
                            '-e', '@' + self.global_vars(), *args)
