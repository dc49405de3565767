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

"""Every name tripleo-ipsec gives to anything: conns, files, resources.

One module owns them so that the renderer, the Ansible role, the OCF agent
and the tests can never disagree.  Names are built from stable identities
(network, host name, VIP name), never from list positions, so adding or
removing a node renames nothing else.
"""

import re

PREFIX = 'tripleo'

# Where a node's bundle lives, relative to the node's root.
IPSEC_D = 'etc/ipsec.d'
MANIFEST = 'etc/ipsec.d/tripleo-ipsec.manifest.json'
# pluto's control socket on a node (libreswan's own default), absolute.
CTLSOCKET = '/run/pluto/pluto.ctl'
# Beside the hosts' trees in a render output: the pcs commands for the VIPs.
PACEMAKER_COMMANDS = 'pacemaker.json'

# The kernel's safety net under pluto's policies (with IpsecFailurePolicy
# private): per pair and direction one xfrm policy ``action block``.  Its
# priority is the lowest precedence the kernel knows short of the last few
# values (a lower number wins): every policy pluto installs beats it while it
# exists, and it drops what would otherwise pass in clear when there is none.
# ``mark 0/0xffffffff`` keeps it a policy of its own beside pluto's mark-less
# one for the same selector (the kernel keeps one per selector and mark),
# and still matches every unmarked packet.
NET_PRIORITY = 0xfffffff0
NET_MARK = ('0', '0xffffffff')
# What libreswan's ipsec.service does once pluto has crashed, as our
# drop-in of it does it instead (libreswan.service_dropin): every xfrm
# policy flushed and the net put back in one ``ip -batch`` run, then every
# state flushed.  The apply module keeps the batch up to date.
STOP_BATCH = 'etc/ipsec.d/tripleo-ipsec-stop.batch'
SERVICE_DROPIN = 'etc/systemd/system/ipsec.service.d/tripleo-ipsec.conf'

# Our OCF resource agent: ocf:<provider>:<type>.
OCF_PROVIDER = 'tripleo-ipsec'
OCF_TYPE = 'vip'


def host_conn(network, host_a, host_b):
    """The conn between two hosts on a network; the same name on both ends."""
    if host_b < host_a:
        host_a, host_b = host_b, host_a
    return '%s-%s-%s--%s' % (PREFIX, network, host_a, host_b)


def vip_conn(vip_name, peer):
    """The conn between a VIP and one peer host.

    The peer's side (towards the VIP) and the holder's side (from the VIP to
    that peer) carry the same name, so each end mirrors the other.
    """
    return '%s-vip-%s-%s' % (PREFIX, vip_name, peer)


def clear_conn(network, proto, port, way, index):
    """A passthrough conn of an exemption (IpsecClearExemptions).

    ``way`` is 'to' (the peer's port) or 'from' (this host's), ``index``
    the subnet's place among the network's: no ``--``, so never a
    host_conn's name.
    """
    return '%s-clear-%s-%s%s-%s-%d' % (PREFIX, network, proto,
                                       port or '', way, index)


def group_conn(network):
    """The opportunistic group conn of a network (IpsecMode group).

    Its policy group file (``group_policy``) lists the network's subnets:
    no ``--``, so never a host_conn's name.
    """
    return '%s-group-%s' % (PREFIX, network)


def group_policy(network):
    """The group conn's policy file: pluto reads policies/<conn name>."""
    return '%s/policies/%s' % (IPSEC_D, group_conn(network))


def clear_conf(network):
    return '%s/%s-clear-%s.conf' % (IPSEC_D, PREFIX, network)


def vip_holder_alias(vip_name):
    """The ``connalias`` every holder conn of a VIP carries.

    The OCF agent initiates and deletes all of a VIP's holder conns with one
    whack by this name: a failover waits for each command it runs.
    """
    return '%s-holders-%s' % (PREFIX, vip_name)


def ours(conn):
    """Whether pluto's conn ``conn`` is one of ours that pluto loads.

    The ``also=`` sections (``defaults_conn``) are never loaded themselves;
    a group conn's instances (``<group>#<subnet>``) are pluto's own.
    """
    return (conn.startswith(PREFIX + '-') and '#' not in conn and
            not conn.startswith(defaults_conn('')))


def defaults_conn(group):
    """The section a file's conns include with ``also=`` (never loaded)."""
    return '%s-defaults-%s' % (PREFIX, group)


def network_conf(network):
    return '%s/%s-%s.conf' % (IPSEC_D, PREFIX, network)


def network_secrets(network):
    return '%s/%s-%s.secrets' % (IPSEC_D, PREFIX, network)


def vip_conf(vip_name):
    return '%s/%s-vip-%s.conf' % (IPSEC_D, PREFIX, vip_name)


def vip_secrets(vip_name):
    return '%s/%s-vip-%s.secrets' % (IPSEC_D, PREFIX, vip_name)


def dns_label(name):
    """A network's or VIP's name as a DNS label, as THT spells networks.

    THT's ``fqdn_internal_api`` is ``<host>.internalapi.<CloudDomain>``.
    """
    return name.replace('_', '')


def host_cert_id(host, network, domain):
    """The identity (DNS name) of a host's certificate on a network."""
    return '%s.%s.%s' % (host.split('.')[0], dns_label(network), domain)


def vip_cert_id(vip_name, network, domain):
    """The identity of a VIP's certificate, which every holder carries."""
    return 'vip-%s.%s.%s' % (dns_label(vip_name), dns_label(network),
                             domain)


def host_cert(network):
    """The NSS nickname of a host's certificate on a network."""
    return '%s-ipsec-%s' % (PREFIX, network)


def vip_cert(vip_name):
    """The NSS nickname of a VIP's certificate (on each of its holders)."""
    return '%s-ipsec-vip-%s' % (PREFIX, vip_name)


def trust_anchor(fingerprint):
    """The NSS nickname of a CA certificate we trust, by its SHA-256."""
    return '%s-ipsec-ca-%s' % (PREFIX, fingerprint[:16].lower())


def cert_principal(cert_id):
    """The Kerberos service principal IPA issues a certificate for."""
    return 'ipsec/%s' % cert_id


def vip_ip_resource(address):
    """The IPaddr2 resource tripleo-heat-templates creates for a VIP.

    THT (puppet-tripleo ``pacemaker::resource::ip``) names it ``ip-<address>``;
    an IPv6 address keeps its colons out of the XML id by using dots.
    """
    return 'ip-%s' % address.replace(':', '.')


def vip_ipsec_resource(vip_name):
    """Our resource that owns the VIP's IPsec side."""
    return '%s-ipsec-%s' % (PREFIX, vip_name)


def ocf_agent():
    return 'ocf:%s:%s' % (OCF_PROVIDER, OCF_TYPE)


def firewall_rule(number, what, scope):
    """A ``tripleo_firewall`` rule name: '<number> ipsec <what> <scope>'.

    The scope is '<network> <cidr>': one rule per subnet of a protected
    network.  The Heat service builds the same names with yaql
    (deployment/ipsec/ipsec-baremetal-ansible.yaml); tests/test_heat.py
    holds its rules equal to the plan's.
    """
    return '%d ipsec %s %s' % (number, what, scope)


# What may reach a file name, a conn name, a pcs id or a path: the whole
# text must match (fullmatch: no trailing newline slips through).
_NETWORK = re.compile(r'[a-z][a-z0-9_]{0,62}')
_HOST = re.compile(r'(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?'
                   r'(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*')


def valid_network(name):
    """A network's name_lower, or a VIP's name (they share the form)."""
    return isinstance(name, str) and _NETWORK.fullmatch(name) is not None


def valid_host(name):
    """A host name as THT gives it: lower-case DNS labels."""
    return isinstance(name, str) and _HOST.fullmatch(name) is not None
