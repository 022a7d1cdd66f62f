"""Differential test: what leaves the router for each frame of the corpus is
the same with plain Linux forwarding and with xdprouter attached.

The corpus (corpus.py) is sent from h1, one frame at a time, twice in the same
lab: first with nothing attached, then with the fast path attached natively to
both router interfaces. Everything the router emits on either side is captured
with AF_PACKET sockets in h1 and h2 and compared byte for byte, frame by frame.

What makes the two runs comparable:

* The hosts are passive taps: no addresses and IPv6 disabled on their
  interfaces, so their own stacks never answer (a forwarded TCP SYN would
  otherwise come back as h2's RST, whose IP ID is h2's to choose).
* The router knows every neighbour it needs (permanent ARP/ND entries), so it
  sends no ARP/ND of its own except for the frames aimed at addresses nobody
  answers; non-permanent entries are flushed before each run, with one probe
  and a short retransmit time so those frames behave the same in both.
* The router's ICMP error rate limits (per peer and global) are off, and each
  frame has its own source address, so the kernel limits that cannot be turned
  off per namespace (route/error_cost for ip_error(), the redirect backoff)
  start afresh for every frame in both runs.
* Only frames the router sends are kept (PACKET_OUTGOING of the host is not),
  minus MLD, router solicitations/advertisements and IGMP, which the router's
  stack emits on its own schedule and no frame of the corpus causes.
* The router's own IPv4 datagrams (ICMP errors, echo replies) are sent without
  DF, so their IP ID comes from the kernel's hashed per-destination generator
  (ip_select_ident()) and differs from run to run by design: that field and
  the header checksum covering it are zeroed, and nothing else.

Outputs are assigned to the frame sent last before they were captured, unless
they carry another frame's marker (ICMP errors quote the payload), which then
wins: a late ICMP error after a failed neighbour resolution lands where it
belongs. In the xdprouter run each frame must move the program's counters
exactly once, which also shows the outputs were not assigned a frame late.

The whole comparison runs for three router set-ups (VARIANTS): a plain one,
one with a local route, policy rules, send_redirects off (same-interface
frames become XDP_TX) and L4 multipath hashing, and the plain one with a
firewall loaded that lets the corpus through (about 2,000 rules of the
benchmark's kinds and a 20,000-prefix set, none covering a corpus address,
behind allow rules corpus frames match). Frames listed in
corpus.KNOWN_GAPS must still differ (they need the control plane). Set
XDPR_DIFF_DUMP=path to get every frame's outputs from both runs in a file.
"""

from __future__ import annotations

import re

import pytest

from xdprouter.lab import Lab

from . import corpus, harness


@pytest.mark.parametrize("variant", list(harness.VARIANTS.values()), ids=list(harness.VARIANTS))
def test_linux_and_xdprouter_emit_the_same_bytes(lab: Lab, variant: harness.Variant) -> None:
    macs = harness.router_lab(lab, variant)
    frames = corpus.build(macs)
    assert len(frames) >= 80
    kernel, xdp, forwarded, lookups = harness.run_both(lab, frames, firewall=variant.firewall)
    harness.dump(frames, kernel, xdp)
    unseen = [f"#{i} {frames[i].name}: {r}" for i, r in enumerate(xdp.reasons) if not re.fullmatch(r"\w+ x1", r)]
    assert not unseen, "XDP did not count each frame exactly once (settle too short?):\n" + "\n".join(unseen)
    bad = harness.differing(kernel, xdp)
    unexpected = [i for i in bad if frames[i].name not in corpus.KNOWN_GAPS]
    assert not unexpected, harness.report(frames, kernel, xdp, unexpected)
    fixed = {frame.name for frame in frames} & set(corpus.KNOWN_GAPS) - {frames[i].name for i in bad}
    assert not fixed, f"known gaps now agree with Linux, remove them from corpus.KNOWN_GAPS: {sorted(fixed)}"
    # The comparison means something only if the fast path did forward.
    assert forwarded > 0, "the fast path forwarded nothing: every frame went to the kernel"
    # IPv6 lookups go to the main table alone unless policy rules exist
    # (docs/design.md): the comparison covers both ways
    if variant.custom:
        assert lookups.ipv6_main_only == 0, "IPv6 lookups skipped the local table despite policy rules"
    else:
        assert lookups.ipv6_main_only > 0, "no IPv6 lookup went to the main table alone"
    if variant.firewall:  # the rules were there, and the corpus met them
        assert xdp.fw_rules > 1000 and xdp.fw_allowed > 10, (xdp.fw_rules, xdp.fw_allowed)
    silent = [frames[i].name for i in range(len(frames)) if not kernel.outputs[i]]
    assert len(silent) < len(frames) // 2, f"suspiciously many frames without output: {silent}"
