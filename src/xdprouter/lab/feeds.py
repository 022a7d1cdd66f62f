"""One-way load sources, out of a host's interface toward the router.

* ``Injector``: frames in receive batches of a chosen size. A UDP GSO send
  into a veth pair inside the sending host arrives there as up to 64
  segments in one NAPI poll; ``xdp_inject`` writes each as the next frame of
  the template's sequence and redirects it out of the host's interface, so
  the router receives the batch in one poll too.
* ``Flood``: as fast as one core makes frames and the router takes them
  (``xdp_flood``: a devmap broadcast copies a frame that goes round a veth
  pair inside the host).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from ..dataplane.abi import GenCount, GenSlot, LoopStateSlot
from ..errors import UsageError
from . import Host, Lab, Scoped, netns
from .traffic import LOOP_DPORT, RING_SIZE, SendResult, Traffic, Vary, on_cpu, run_budget, window_seconds

UDP_SEGMENT = 103  # linux/udp.h: the GSO segment size of a UDP send
MAX_SEGMENTS = 64  # segments of one UDP GSO send: a veth NAPI poll's budget
_CARRIER = 14 + 20 + 8  # Ethernet, IPv4 and UDP headers of the injector's carrier frames
_INJ_NEAR, _INJ_FAR = "xinj0", "xinj1"  # the injector's veth pair, inside the sending host
_FLOOD_NEAR, _FLOOD_FAR = "xfld0", "xfld1"  # the flood generator's veth pair, likewise
_INJ_ADDR, _INJ_PEER = "198.18.255.253", "198.18.255.254"  # its carrier addresses (a /30 of 198.18.0.0/15)


class _HostPair(Scoped):
    """A source built on a veth pair (``near``, ``far``) inside ``host``:
    created on entry (then ``_build``), removed on exit even when the
    build failed."""

    near = far = ""

    def __init__(self, traffic: Traffic, lab: Lab, host: Host) -> None:
        self.traffic = traffic
        self.lab = lab
        self.host = host
        self.ifindex = 0  # the host's interface, where the frames leave

    def _open(self) -> None:
        ns = self.host.ns
        self.lab.ip(ns, "link", "add", self.near, "type", "veth", "peer", "name", self.far)
        for iface in (self.near, self.far):
            self.lab.sysctl(ns, f"net.ipv6.conf.{iface}.disable_ipv6", "1")
            self.lab.ip(ns, "link", "set", iface, "up")
        self._build()

    def _build(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if os.path.exists(f"/run/netns/{self.host.ns}"):
            self.lab.ip(self.host.ns, "link", "del", self.near, check=False)


class Injector(_HostPair):
    """One-way frames out of ``host``'s interface, in receive batches of up to
    64: UDP GSO sends into the pair's near end, ``xdp_inject`` on its far end."""

    near, far = _INJ_NEAR, _INJ_FAR

    def __init__(self, traffic: Traffic, lab: Lab, host: Host) -> None:
        super().__init__(traffic, lab, host)
        self._sock: socket.socket | None = None

    def _build(self) -> None:
        ns, lab = self.host.ns, self.lab
        lab.ip(ns, "addr", "add", f"{_INJ_ADDR}/30", "dev", _INJ_NEAR)
        lab.ip(ns, "neigh", "replace", _INJ_PEER, "lladdr", lab.mac(ns, _INJ_FAR), "dev", _INJ_NEAR, "nud", "permanent")
        # segmented in software before the veth, so the segments reach the
        # far end one by one, all within one transmit call
        lab.run(ns, "ethtool", "-K", _INJ_NEAR, "tx-udp-segmentation", "off")
        self.traffic.attach(ns, _INJ_FAR, self.traffic.inject)
        with netns(ns):
            self.ifindex = socket.if_nametoindex(self.host.iface)
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((_INJ_ADDR, 0))

    def close(self) -> None:
        if self._sock:
            self._sock.close()
            self._sock = None
        super().close()

    def send(
        self, frame: bytes, count: int, vary: Vary | None = None, *, batch: int = MAX_SEGMENTS, cpu: int = 0
    ) -> SendResult:
        """Send ``count`` frames of ``frame``'s sequence in batches of
        ``batch`` (each one NAPI poll at the router). Returns when the last
        batch is sent; the kernel may still be forwarding it."""
        assert self._sock is not None
        seg = len(frame) - _CARRIER
        if seg < 1:
            raise UsageError(f"frames must be longer than {_CARRIER} bytes")
        batch = max(1, min(batch, MAX_SEGMENTS, 65507 // seg))
        self.traffic.configure(GenSlot.INJECT, frame, vary or Vary(), ifindex=self.ifindex)
        self._sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, seg if batch > 1 else 0)
        payload = bytes(seg * batch)
        peer = (_INJ_PEER, LOOP_DPORT)
        full, rest = divmod(count, batch)
        with on_cpu(cpu):
            start = time.perf_counter()
            for _ in range(full):
                self._sock.sendto(payload, peer)
            if rest:
                self._sock.sendto(payload[: seg * rest], peer)
            return SendResult(count, time.perf_counter() - start)

    def sent(self) -> int:
        """Frames the injector has sent toward the router since the last reset."""
        return self.traffic.counted(GenCount.INJECT).packets


@dataclass
class FloodResult:
    """One flood: frames sent toward the router, and how fast."""

    sent: int
    window_frames: int  # sent within the timed window
    window_seconds: float
    lost: int  # generator frames that never retired

    @property
    def pps(self) -> float:
        return self.window_frames / self.window_seconds if self.window_seconds > 0 else 0.0


class Flood(_HostPair):
    """One-way frames out of ``host``'s interface as fast as one core makes
    them and the router takes them: a few frames go round a veth pair inside
    the host (``xdp_flood`` and ``xdp_flood_back``), and each round a copy of
    the next frame of the template's sequence leaves for the router (a devmap
    broadcast: one page and one copy a frame). The pair is created on entry
    and removed on exit."""

    near, far = _FLOOD_NEAR, _FLOOD_FAR

    def _build(self) -> None:
        ns, t = self.host.ns, self.traffic
        t.attach(ns, _FLOOD_NEAR, t.flood_back)
        t.attach(ns, _FLOOD_FAR, t.flood)
        with netns(ns):  # a devmap resolves an ifindex in the caller's namespace
            self.ifindex = socket.if_nametoindex(self.host.iface)
            t.flood_ports(socket.if_nametoindex(_FLOOD_FAR), self.ifindex)

    def run(
        self, frame: bytes, total: int, vary: Vary | None = None, *, in_flight: int = 64, cpu: int = 0
    ) -> FloodResult:
        """Send ``total`` frames of ``frame``'s sequence; returns when the
        generator's frames have all retired."""
        if not 0 < in_flight < RING_SIZE or total < 4 * in_flight:
            raise UsageError(f"a flood needs 1-{RING_SIZE - 1} frames in flight and at least 4 times as many in total")
        t = self.traffic
        t.configure(GenSlot.INJECT, frame, vary or Vary())
        sent0 = t.counted(GenCount.INJECT).packets
        _, window_frames = t.start_budget(LoopStateSlot.FLOOD, total + in_flight, in_flight)
        state, _ = run_budget(
            t, LoopStateSlot.FLOOD, self.host.ns, _FLOOD_NEAR, frame, in_flight, cpu, 10 + total / 20_000
        )
        sent = t.counted(GenCount.INJECT).packets - sent0
        return FloodResult(sent, window_frames, window_seconds(state), in_flight - state.retired)
