"""xdprouter.xsk in a lab: real frames into an AF_XDP socket on the router's
veth1 (nothing else attached) and out of it to h1."""

from __future__ import annotations

import socket
import time

import pytest

from xdprouter import xsk
from xdprouter.dataplane import xdp
from xdprouter.errors import UsageError
from xdprouter.lab import Lab, netns

from .wire import frames, quiet_h1, raw_socket, receive_all, send_from_h1


def test_receive_byte_for_byte(lab: Lab) -> None:
    quiet_h1(lab)
    sent = frames(lab, 200)
    with netns(lab.router), xsk.Port("veth1") as port:
        assert len(port.sockets) == xsk.queue_count("veth1") >= 1
        assert not port.sockets[0].zero_copy  # veth: copy mode
        send_from_h1(lab, sent)
        got = receive_all(port, len(sent))
        stats = port.stats()
    assert sorted(got) == sorted(sent)
    assert stats.rx_dropped == stats.rx_ring_full == stats.rx_invalid_descs == 0


def test_frames_are_views_into_umem(lab: Lab) -> None:
    quiet_h1(lab)
    (sent,) = frames(lab, 1)
    with netns(lab.router), xsk.Socket("veth1", 0) as sock, xsk.Redirector("veth1") as redirector:
        redirector.add(sock)
        # queue 0 only: a veth's rx queue follows the sending CPU, so send
        # until one frame lands there
        h1 = raw_socket(lab.h1.ns, "eth0")
        try:
            got = sock.recv()
            for _ in range(50):
                h1.send(sent)
                got = sock.recv(timeout=0.1)
                if got:
                    break
        finally:
            h1.close()
        assert got and isinstance(got[0], memoryview) and got[0].readonly is False
        assert bytes(got[0]) == sent
        assert got[0].obj is not None and len(memoryview(got[0].obj)) == 4096 * 2048  # the UMEM itself


def test_send_reaches_host(lab: Lab) -> None:
    out = [f[6:12] + f[0:6] + f[12:] for f in frames(lab, 100, b"back")]  # r -> h1
    h1 = raw_socket(lab.h1.ns, "eth0")
    h1.settimeout(0.5)
    try:
        with netns(lab.router), xsk.Port("veth1") as port:
            sock = port.sockets[-1]
            sent = 0
            while sent < len(out):
                sent += sock.send(out[sent:])
            assert sock.flush()
            got: list[bytes] = []
            deadline = time.monotonic() + 5
            while len(got) < len(out) and time.monotonic() < deadline:
                try:
                    f = h1.recv(4096)
                except TimeoutError:
                    continue
                if b"back" in f:
                    got.append(f)
            assert sock.stats().tx_invalid_descs == 0
    finally:
        h1.close()
    assert got == out


def test_ring_full_counted(lab: Lab) -> None:
    """Frames Python does not read fill the RX ring; the kernel counts the rest."""
    quiet_h1(lab)
    sent = frames(lab, 600)
    with netns(lab.router), xsk.Port("veth1", frames=512) as port:  # rings of 256
        send_from_h1(lab, sent)
        time.sleep(0.2)
        stats = port.stats()
        pending = sum(s.pending() for s in port.sockets)
    # every frame is either waiting or dropped; a drop is also counted under its cause
    assert pending + stats.rx_dropped == len(sent)
    assert stats.rx_dropped == stats.rx_ring_full + stats.rx_fill_ring_empty_descs > 0


def test_closed_port_detaches(lab: Lab) -> None:
    with netns(lab.router):
        index = socket.if_nametoindex("veth1")
        with xsk.Port("veth1"):
            assert xdp.query(index).prog_id
        assert xdp.query(index).prog_id == 0


def test_reopened_at_once(lab: Lab) -> None:
    """The kernel lets go of a closed socket's queue a moment later: a new
    socket on it binds all the same (it waits for that)."""
    with netns(lab.router):
        for _ in range(4):
            with xsk.Port("veth1") as port:
                assert port.sockets


def test_bad_queue_is_one_line(lab: Lab) -> None:
    with netns(lab.router):
        n = xsk.queue_count("veth1")
        with pytest.raises(UsageError, match=rf"^veth1 has {n} queues? \(0\.\.{n - 1}\), no queue {n}$"):
            xsk.Socket("veth1", n)
        with pytest.raises(UsageError, match=r"^unknown interface: nosuch0$"):
            xsk.Port("nosuch0")
        assert xdp.query(socket.if_nametoindex("veth1")).prog_id == 0


def test_interface_taken_or_other(attached_lab: Lab) -> None:
    """xdprouter attached: no redirector on its interfaces; a socket of another
    interface is refused by a redirector; nothing changes."""
    lab = attached_lab
    with netns(lab.router):
        index = socket.if_nametoindex("veth1")
        before = xdp.query(index).prog_id
        with pytest.raises(UsageError, match=r"^veth1 already has an XDP program \(id \d+, native\): detach it first$"):
            xsk.Port("veth1")
        assert xdp.query(index).prog_id == before
        lab.xdprouter("detach", "veth2")
        with xsk.Socket("veth1", 0) as sock, xsk.Redirector("veth2") as redirector:
            with pytest.raises(UsageError, match="^the socket is bound to veth1, not to veth2"):
                redirector.add(sock)
        assert xdp.query(index).prog_id == before
