"""Fixtures of the daemon tests: a lab, and daemons run in its router
namespace as an operator runs them (``xdprouter daemon --config FILE``),
each told ready through its NOTIFY_SOCKET, all killed and the fast path
detached afterwards even when the test fails."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xdprouter.lab import Lab

# Measured stale windows, printed at the end of the session (pytest -s shows them).
STALE_WINDOWS: dict[str, list[float]] = {}


class DaemonProc:
    """One ``xdprouter daemon`` process in the lab's router namespace."""

    def __init__(self, lab: Lab, config: Path, workdir: Path, n: int) -> None:
        self.lab = lab
        self.config = config
        self.log_path = workdir / f"daemon-{n}.log"
        self.notify_path = workdir / f"notify-{n}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    lab.router,
                    sys.executable,
                    "-m",
                    "xdprouter.cli",
                    "daemon",
                    "--config",
                    str(config),
                ],
                stdout=log,
                stderr=log,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def notifications(self, timeout: float) -> list[str]:
        """sd_notify messages received within ``timeout`` seconds (at least one, or none)."""
        self.notify.settimeout(timeout)
        out = []
        try:
            out.append(self.notify.recv(4096).decode())
            self.notify.settimeout(0.05)
            while True:
                out.append(self.notify.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            pass
        return out

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the daemon sends READY=1 (after start, or after a reload)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before READY=1:\n{self.log()}")
            for msg in self.notifications(0.2):
                if "READY=1" in msg.split("\n"):
                    return
        raise AssertionError(f"no READY=1 within {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"daemon did not exit on {signal.Signals(sig).name}:\n{self.log()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        state = Path("/run/xdprouter") / f"daemon-{os.stat(f'/run/netns/{self.lab.router}').st_ino}.json"
        state.unlink(missing_ok=True)  # left by a daemon killed with -9
        self.notify.close()
        self.notify_path.unlink(missing_ok=True)


@pytest.fixture
def daemons(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., DaemonProc]]:
    """``start(config_text, wait=True)``: a daemon on the lab with that config
    (written to tmp_path/xdprouter.toml); every one is killed afterwards and
    the fast path detached."""
    started: list[DaemonProc] = []

    def start(config_text: str | None = None, wait: bool = True) -> DaemonProc:
        config = tmp_path / "xdprouter.toml"
        if config_text is not None:
            config.write_text(config_text)
        d = DaemonProc(lab, config, tmp_path, len(started))
        started.append(d)
        if wait:
            d.wait_ready()
        return d

    try:
        yield start
    finally:
        for d in started:
            d.close()
        lab.xdprouter("detach", "--all", check=False)


def stats(lab: Lab) -> dict[str, dict[str, object]]:
    out = json.loads(lab.xdprouter("stats", "--json").stdout)
    assert isinstance(out, dict)
    return out


def resolve_neighbours(lab: Lab, timeout: float = 5.0) -> None:
    """Ping both hosts from the router (retried: routes come back a moment
    after a link does)."""
    for dst in ("10.1.0.2", "fd01::2", "10.2.0.2", "fd02::2"):
        six = ["-6"] if ":" in dst else []
        deadline = time.monotonic() + timeout
        while lab.run(lab.router, "ping", *six, "-n", "-c", "1", "-W", "1", dst, check=False, timeout=10).returncode:
            if time.monotonic() > deadline:
                raise AssertionError(f"the router cannot reach {dst}")
            time.sleep(0.1)


def pytest_terminal_summary(terminalreporter: object) -> None:  # pragma: no cover - reporting only
    if STALE_WINDOWS:
        write = terminalreporter.write_line  # type: ignore[attr-defined]
        write("stale windows (change -> fast path agrees with Linux), ms:")
        for what, values in sorted(STALE_WINDOWS.items()):
            ms = sorted(v * 1e3 for v in values)
            write(f"  {what:<28} n={len(ms)} min={ms[0]:.1f} median={ms[len(ms) // 2]:.1f} max={ms[-1]:.1f}")
