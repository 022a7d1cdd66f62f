"""A numbered UDP flow h1 -> h2 through the router, to prove that nothing
was lost while the daemon reloaded, restarted or was killed."""

from __future__ import annotations

import socket
import struct
import threading
import time

from xdprouter.lab import Lab, netns

SO_RCVBUFFORCE = 33
PORT = 7913


class Flow:
    """Sends sequence numbers from h1 to h2 at ``rate`` per second until stopped."""

    def __init__(self, lab: Lab, rate: int = 2000) -> None:
        self.rate = rate
        with netns(lab.h2.ns):
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with netns(lab.h1.ns):
            self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self.rx.bind((lab.h2.ip4, PORT))
        self.rx.settimeout(0.2)
        self.dst = (lab.h2.ip4, PORT)
        self.sent = 0
        self.received: set[int] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send), threading.Thread(target=self._receive)]

    def __enter__(self) -> Flow:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _send(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            self.tx.sendto(struct.pack("!Q", self.sent) + bytes(56), self.dst)
            self.sent += 1
            ahead = start + self.sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def _receive(self) -> None:
        idle_since = None
        while True:
            try:
                data = self.rx.recv(2048)
            except TimeoutError:
                if self._stop.is_set():
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 0.5:
                        return
                continue
            self.received.add(struct.unpack("!Q", data[:8])[0])

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(10)
        self.tx.close()
        self.rx.close()

    def lost(self) -> list[int]:
        return sorted(set(range(self.sent)) - self.received)
