"""How the daemon talks to the world around it: systemd (sd_notify, the
watchdog), the journal (log lines with priorities), and ``xdprouter reload``
(a state file per namespace, SIGHUP, the answer read back)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import XdpRouterError

log = logging.getLogger("xdprouter.daemon")


# -- systemd -------------------------------------------------------------


def sd_notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1") to the service manager over the
    NOTIFY_SOCKET datagram protocol (sd_notify(3)); False when there is none."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    # non-blocking: a listener that does not read (its queue full) must not stop the router
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as e:
            log.warning("sd_notify to %s failed: %s", path, e.strerror or e)
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC, if systemd asks this process for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class _JournalFormatter(logging.Formatter):
    """``<N>message`` under journald (sd-daemon(3) priority prefixes), else
    ``xdprouter[pid]: level: message``."""

    _PRIO = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self) -> None:
        super().__init__()
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if self.journal:
            return f"<{self._PRIO.get(record.levelno, 6)}>{msg}"
        return f"xdprouter[{os.getpid()}]: {record.levelname.lower()}: {msg}"


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_JournalFormatter())
    root = logging.getLogger("xdprouter")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


# -- the daemon's state file (for `xdprouter reload` and tests) -----------


def state_path() -> Path:
    """Where the daemon of the caller's namespace says who it is."""
    ino = os.stat("/proc/self/ns/net").st_ino
    base = Path(os.environ.get("RUNTIME_DIRECTORY", "/run/xdprouter")).resolve()
    return base / f"daemon-{ino}.json"


def read_state() -> dict[str, Any] | None:
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None  # a daemon that died without cleaning up (kill -9)
    return state


@dataclass
class ReloadResult:
    ok: bool
    message: str
    when: float = 0.0  # time.time()


def request_reload(timeout: float = 30.0) -> ReloadResult:
    """``xdprouter reload``: SIGHUP the namespace's daemon and wait for its answer."""
    state = read_state()
    if state is None:
        raise XdpRouterError(f"no xdprouter daemon runs in this namespace ({state_path()} absent or stale)")
    seq = state.get("reload_seq", 0)
    os.kill(int(state["pid"]), signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = read_state()
        if now is None:
            raise XdpRouterError("the daemon exited during the reload")
        if now.get("reload_seq", 0) > seq and now.get("last_reload"):
            last = now["last_reload"]
            return ReloadResult(bool(last["ok"]), str(last["message"]), float(last["time"]))
    raise XdpRouterError(f"the daemon (pid {state['pid']}) did not answer within {timeout:g} s")
