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

"""A VIP move as the pinger saw it: the one outage measure of the lab.

A pinger (a compute) sends an echo request to the VIP every 10 ms
(``ping -D``, which stamps every reply it prints).  The capture on the
VIP's bridge sees the same replies as ESP from the VIP to the pinger, each
with the source MAC of the node that sent it.  So every reply the pinger
received is attributed to a holder: the MAC of the last ESP frame from the
VIP to the pinger captured before the reply was printed.

For one move, whose window runs from the start of its first action to the
start of the next move (or the end of the pinging):

- the new holder is the node that should hold the VIP after the move;
- the outage is the longest gap the pinger saw between two replies, from
  the last reply it had (whoever sent it) before the new holder's first,
  or the move's start if that is later, through every later gap between
  the new holder's replies, to the end of the window (a VIP that was dead
  before the move is the earlier move's failure, not this one's);
- a move with no reply from the new holder in its window has failed, and
  its figure is the whole window: a dead VIP cannot read as a short gap.

``esp_frames`` and ``attribute`` read what was recorded; ``measure`` is a
pure function of the attributed replies, so the tests can feed it a dead
VIP, a VIP that answers from the wrong node, or a clean move.
"""

import re

from tripleo_ipsec.node import wire

ESP = 50
REPLY = re.compile(r'^\[(\d+\.\d+)\] \d+ bytes from ')
# ping prints a reply just after its frame crossed the bridge; the two
# clocks are one (the guest's), their stamps are taken microseconds apart
SLACK = 0.005


def replies(text):
    """The times of the echo replies in ``ping -D`` output."""
    return [float(m.group(1)) for m in map(REPLY.match, text.splitlines())
            if m]


def esp_frames(data, src, dst):
    """ESP frames from SRC to DST in pcap bytes: [(time, MAC, SPI)]."""
    result = []
    for (ts, mac), (_, s, d, proto, payload) in zip(
            wire.sources(data), wire.packets(data)):
        if proto == ESP and s == src and d == dst:
            result.append((ts, mac, payload[:4].hex()))
    return result


def attribute(times, frames, slack=SLACK):
    """[(time, MAC or None)]: each reply, and who sent the frame it came in.

    A reply is the last frame captured at or before it was printed; none
    before it (a reply that never crossed the capture) gives None.
    """
    result, i = [], 0
    for t in sorted(times):
        while i < len(frames) and frames[i][0] <= t + slack:
            i += 1
        result.append((t, frames[i - 1][1] if i else None))
    return result


def measure(series, start, end, new):
    """One move's figures from SERIES [(time, holder)], sorted.

    NEW is the holder that should answer after the move; START and END
    bound the move's window.  Returns {recovered, outage_ms,
    first_reply_ms, replies_new, others_after}: ``others_after`` counts
    replies from another holder once the new one answered.
    """
    ours = [t for t, who in series if who == new and start <= t < end]
    if not ours:
        return {'recovered': False, 'outage_ms': ms(end - start),
                'first_reply_ms': None, 'replies_new': 0,
                'others_after': 0}
    first = ours[0]
    before = [t for t, _ in series if start <= t < first]
    gaps = [first - (before[-1] if before else start)]
    gaps += [b - a for a, b in zip(ours, ours[1:])]
    gaps.append(end - ours[-1])
    return {'recovered': True, 'outage_ms': ms(max(gaps)),
            'first_reply_ms': ms(first - start), 'replies_new': len(ours),
            'others_after': len([t for t, who in series
                                 if who != new and first < t < end])}


def ms(seconds):
    return int(round(seconds * 1000))


def steady(times, since, span=1.0, gap=0.25):
    """The time replies became steady after SINCE, or None.

    Steady: replies after SINCE with no gap over GAP for SPAN seconds.
    """
    run = None
    for a, b in zip([since] + times, times):
        if b < since:
            continue
        if run is None or b - a > gap:
            run = b
        if b - run >= span:
            return b
    return None
