"""The batch API and the three ways out of it, with real frames in a lab:
a received frame sent back in place (no copy), forwarded to another
interface's socket (a copy into its UMEM), and given back to the kernel
(a TAP and a TC redirect to the interface's ingress)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from xdprouter import xsk
from xdprouter.errors import UsageError
from xdprouter.lab import Lab, netns

from .wire import frames, incoming, quiet_h1, raw_socket, send_from_h1, swap_macs


def test_batch_arrays_views_and_release(lab: Lab) -> None:
    quiet_h1(lab)
    sent = frames(lab, 300)
    got: list[bytes] = []
    with netns(lab.router), xsk.Port("veth1") as port:
        send_from_h1(lab, sent)
        for _ in range(200):
            batch = port.recv(64, timeout=0.2)
            if not batch:
                if len(got) >= len(sent):
                    break
                continue
            assert batch.socket is port.last
            views = list(batch)
            assert list(batch.lengths) == [len(v) for v in views]
            assert [bytes(batch.umem[o : o + n]) for o, n in zip(batch.offsets, batch.lengths, strict=True)] == [
                bytes(v) for v in views
            ]
            assert bytes(batch[-1]) == bytes(views[-1]) and [bytes(v) for v in batch[:2]] == [
                bytes(v) for v in views[:2]
            ]
            got += [bytes(v) for v in views]
            batch.release()  # early: the next recv must not give them back twice
            assert batch.released
            batch.release()
        assert not port.recv()
        assert port.stats().rx_dropped == 0
    assert sorted(got) == sorted(sent)


@pytest.fixture
def reflector(lab: Lab) -> Iterator[Callable[[Callable[[xsk.Batch], None]], xsk.Port]]:
    """Runs ``answer(batch)`` on every batch a Port on veth1 receives, in a thread."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    ports: list[xsk.Port] = []
    failures: list[BaseException] = []

    def start(answer: Callable[[xsk.Batch], None]) -> xsk.Port:
        with netns(lab.router):
            port = xsk.Port("veth1")
        ports.append(port)

        def loop() -> None:
            while not stop.is_set():
                batch = port.recv(64, timeout=0.05)
                try:
                    if batch:
                        answer(batch)
                except BaseException as e:  # failed in the thread: raised again in the test
                    failures.append(e)
                    return

        threads.append(threading.Thread(target=loop, daemon=True))
        threads[-1].start()
        return port

    try:
        yield start
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for p in ports:
            p.close()
    if failures:
        raise failures[0]


def test_send_in_place_reflects_byte_for_byte(lab: Lab, reflector: Callable[..., xsk.Port]) -> None:
    """Every frame goes back to h1 from its own UMEM buffer, MACs swapped in
    place; more frames than the UMEM has buffers, so buffers sent in place
    must come back and the fill ring be topped up."""
    quiet_h1(lab)

    def answer(batch: xsk.Batch) -> None:
        umem = batch.umem
        for off in batch.offsets:
            umem[off : off + 12] = bytes(umem[off + 6 : off + 12]) + bytes(umem[off : off + 6])
        assert batch.socket is not None
        assert batch.socket.send_in_place(batch) == len(batch)

    port = reflector(answer)
    h1 = raw_socket(lab.h1.ns, "eth0")
    got: list[bytes] = []
    expected: list[bytes] = []
    try:
        for chunk in range(20):  # 20 x 300 frames: more than the 4096 buffers of a socket
            sent = frames(lab, 300, b"refl%d" % chunk)
            for f in sent:
                h1.send(f)
            expected += [swap_macs(f) for f in sent]
            got += incoming(h1, len(sent), b"refl%d" % chunk)
    finally:
        h1.close()
    assert sorted(got) == sorted(expected)
    stats = port.stats()
    assert stats.rx_dropped == stats.tx_invalid_descs == 0
    for s in port.sockets:
        assert s.flush()


def test_send_in_place_some_frames(lab: Lab, reflector: Callable[..., xsk.Port]) -> None:
    """Only the frames asked for leave (the others' buffers go back to the
    kernel); a frame cannot be sent twice, nor by another socket, nor after
    its batch was released; lengths can be edited."""
    quiet_h1(lab)
    errors: list[str] = []

    def answer(batch: xsk.Batch) -> None:
        sock = batch.socket
        assert sock is not None
        for i, off in enumerate(batch.offsets):
            batch.umem[off : off + 12] = swap_macs(bytes(batch.umem[off : off + 12]))[:12]
            batch.lengths[i] -= 2  # two bytes of the payload fewer
        evens = [i for i, off in enumerate(batch.offsets) if batch.umem[off + 19] % 2 == 0]  # IP id
        assert sock.send_in_place(batch, evens) == len(evens)
        assert [batch.sent(i) for i in range(len(batch))] == [i in evens for i in range(len(batch))]
        for bad in (lambda: sock.send_in_place(batch, evens[-1:]), lambda: other.send_in_place(batch)):
            try:
                bad()
            except UsageError as e:
                errors.append(str(e))
        batch.release()
        try:
            sock.send_in_place(batch)
        except UsageError as e:
            errors.append(str(e))

    with netns(lab.router):
        other = xsk.Socket("veth2", 0)
    try:
        reflector(answer)
        sent = frames(lab, 200, b"some")
        h1 = raw_socket(lab.h1.ns, "eth0")
        try:
            for f in sent:
                h1.send(f)
            got = incoming(h1, len(sent) // 2 + 1, b"some", timeout=3)  # one more than expected: none comes
        finally:
            h1.close()
    finally:
        other.close()
    assert sorted(got) == sorted(swap_macs(f)[:-2] for i, f in enumerate(sent) if i % 2 == 0)
    patterns = [
        r"^frame \d+ of the batch was already sent in place$",
        r"^a batch is sent in place only by the socket that received it \(its UMEM\)$",
        r"^the batch was released: its buffers are the kernel's again$",
    ]
    assert all(any(re.match(p, e) for p in patterns) for e in errors), errors
    assert all(any(re.match(p, e) for e in errors) for p in patterns), errors


def test_forward_to_another_interface(lab: Lab, reflector: Callable[..., xsk.Port]) -> None:
    """Frames from h1 leave through a socket on veth2 (copied into its UMEM),
    MACs rewritten in place first, as a router would."""
    quiet_h1(lab)
    lab.sysctl(lab.h2.ns, "net.ipv6.conf.eth0.disable_ipv6", "1")
    h2_mac, r2_mac = (
        bytes.fromhex(m.replace(":", "")) for m in (lab.mac(lab.h2.ns, "eth0"), lab.mac(lab.router, "veth2"))
    )
    with netns(lab.router):
        out = xsk.Socket("veth2", 0)

    def answer(batch: xsk.Batch) -> None:
        for off in batch.offsets:
            batch.umem[off : off + 12] = h2_mac + r2_mac
        left = list(batch)
        while left:
            left = left[out.send(left) :]

    try:
        reflector(answer)
        sent = frames(lab, 500, b"fwd")
        h2 = raw_socket(lab.h2.ns, "eth0")
        try:
            send_from_h1(lab, sent)
            got = incoming(h2, len(sent), b"fwd")
        finally:
            h2.close()
        assert out.flush()
    finally:
        out.close()
    assert sorted(got) == sorted(h2_mac + r2_mac + f[12:] for f in sent)


def test_give_back_to_the_kernel(lab: Lab, reflector: Callable[..., xsk.Port]) -> None:
    """Every frame goes through Python and back to the kernel as if received
    on veth1: ARP and ping are answered, a UDP socket on the router gets the
    datagrams, and a packet socket on veth1 sees the frames h1 sent, byte
    for byte, once each."""
    quiet_h1(lab)
    ports: list[xsk.Port] = []

    def answer(batch: xsk.Batch) -> None:
        assert ports[0].to_kernel(batch) == len(batch)

    ports.append(reflector(answer))
    with netns(lab.router):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((lab.h1.gw4, 9))
    udp.settimeout(3)
    tap = raw_socket(lab.router, "veth1")
    try:
        ping = lab.run(lab.h1.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", lab.h1.gw4, check=False)
        assert ping.returncode == 0, ping.stdout
        sent = frames(lab, 200, b"kern")
        send_from_h1(lab, sent)
        seen = incoming(tap, len(sent) + 1, b"kern", timeout=3)
        datagrams = [udp.recv(2048) for _ in sent]
    finally:
        udp.close()
        tap.close()
    assert sorted(seen) == sorted(sent)
    assert sorted(datagrams) == sorted(f[42:] for f in sent)
    assert ports[0].reinjector is not None
    with netns(lab.router):
        assert ports[0].reinjector.tap in {name for _, name in socket.if_nameindex()}


def test_give_back_refused_in_generic_mode(lab: Lab) -> None:
    with netns(lab.router), xsk.Port("veth1", xdp_mode="generic") as port:
        with pytest.raises(
            UsageError, match="^frames go back to the kernel only past a native-mode redirector, not generic$"
        ):
            port.to_kernel([])
        with pytest.raises(UsageError, match="^veth1's XDP program runs in generic mode"):
            xsk.Reinjector("veth1")
    with netns(lab.router):
        assert not [name for _, name in socket.if_nameindex() if name.startswith("xskk")]


def test_bad_lengths_refused_nothing_lost(lab: Lab) -> None:
    """A frame that does not fit is a one-line error; in place, the frames
    before it leave all the same, the rest stay in the batch."""
    quiet_h1(lab)
    sent = frames(lab, 3, b"len")
    h1 = raw_socket(lab.h1.ns, "eth0")
    try:
        with netns(lab.router), xsk.Socket("veth1", 0) as sock, xsk.Redirector("veth1") as redirector:
            redirector.add(sock)
            for bad in (b"", bytes(2049)):
                with pytest.raises(
                    UsageError, match=r"^a frame of \d+ bytes: a 2048-byte UMEM buffer takes 1\.\.2048$"
                ):
                    sock.send([sent[0], bad])
            batch = sock.recv()
            for _ in range(50):  # queue 0 only: send until the three land there together
                for f in sent:
                    h1.send(f)
                batch = sock.recv(timeout=0.1)
                if len(batch) == 3:
                    break
            assert [bytes(f) for f in batch] == sent
            batch.lengths[1] = 4000
            with pytest.raises(UsageError, match=r"^frame 1: 4000 bytes do not fit its UMEM buffer \(1\.\.\d+\)$"):
                sock.send_in_place(batch, [0, 1, 2])
            assert [batch.sent(i) for i in range(3)] == [True, False, False]
            assert sock.flush()
            back = incoming(h1, 2, b"len", timeout=1)
            assert sock.stats().tx_invalid_descs == 0
    finally:
        h1.close()
    assert back == [sent[0]]
