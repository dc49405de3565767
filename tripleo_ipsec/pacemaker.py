"""Plan -> the pcs commands that give each VIP its IPsec resource.

For every VIP on a protected network: one ``ocf:tripleo-ipsec:vip``
resource, colocated with the VIP's IPaddr2 resource (THT's ``ip-<address>``)
and ordered after it, so it starts where the VIP lands, after the address
is up, and stops before the address leaves.  ``missing`` compares with a
CIB, so creating is idempotent.  Pure: the caller runs the commands (pcs on
a cluster node, or ``pcs -f`` on a CIB file).
"""

import xml.etree.ElementTree as ET

MONITOR = ('op', 'monitor', 'interval=10s', 'timeout=30s')
START_STOP = ('op', 'start', 'timeout=60s', 'op', 'stop', 'timeout=60s')


def commands(the_plan, cib_file=None):
    """Every pcs command, as argv lists, in the order they must run."""
    pcs = ['pcs'] + (['-f', cib_file] if cib_file else [])
    result = []
    for vip in the_plan.vips:
        res = vip.resource
        params = ['%s=%s' % kv for kv in sorted(res['params'].items())]
        result.append(('primitive', res['id'], pcs + [
            'resource', 'create', res['id'], res['agent']] + params +
            list(MONITOR) + list(START_STOP)))
        result.append(('colocation', (res['id'], res['colocated_with']),
                       pcs + ['constraint', 'colocation', 'add', res['id'],
                              'with', res['colocated_with'], 'INFINITY']))
        result.append(('order', (res['started_after'], res['id']),
                       pcs + ['constraint', 'order', 'start',
                              res['started_after'], 'then', 'start',
                              res['id']]))
    return result


def _present(cib_xml):
    root = ET.fromstring(cib_xml)
    return {
        'primitive': {p.get('id') for p in root.iter('primitive')},
        'colocation': {(c.get('rsc'), c.get('with-rsc'))
                       for c in root.iter('rsc_colocation')},
        'order': {(o.get('first'), o.get('then'))
                  for o in root.iter('rsc_order')},
    }


def missing(the_plan, cib_xml, cib_file=None):
    """The commands whose resource or constraint the CIB lacks."""
    present = _present(cib_xml)
    return [argv for kind, key, argv in commands(the_plan, cib_file)
            if key not in present[kind]]
