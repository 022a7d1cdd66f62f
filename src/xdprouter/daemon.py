"""``xdprouter daemon``: keep the fast path true while the router changes.

One process per network namespace, in the foreground (systemd runs it),
logging to stderr. It attaches to the interfaces its configuration names or
matches, and keeps the attach-time snapshot (addresses, MACs, sysctls, the
IPv6 local table's copy) in step with the kernel by itself:

* rtnetlink events (links, addresses, local routes, rules) renew it at once,
  coalesced: every event already queued is read before one renewal;
* the sysctls it copies are read every ``sysctl_poll_interval`` (no event
  covers send_redirects or disable_ipv6), and a change renews it;
* every ``recheck_interval`` it renews anyway and attaches what matches:
  the safety net for a lost event (a full netlink socket buffer).

SIGHUP (or ``xdprouter reload``) reloads the file: checked in full first; a
refused file changes nothing; an accepted one is applied, the firewall in
one generation flip, then the steering rules (``[steer]``) in another.
SIGTERM exits and leaves the fast path attached unless ``on_exit =
"detach"``; the next daemon adopts the attached program and its maps
(counters go on). It tells systemd when it is ready (``sd_notify``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import netlink, system
from .errors import UsageError, XdpRouterError
from .firewall import Firewall
from .router import Router
from .service import ReloadResult, read_state, sd_notify, state_path, watchdog_interval

log = logging.getLogger("xdprouter.daemon")


@dataclass
class DaemonStats:
    """What the metrics report about the daemon itself."""

    started: float = field(default_factory=time.time)
    snapshot_at: float = 0.0  # time.monotonic() of the last renewal
    renewals: dict[str, int] = field(default_factory=dict)  # cause -> count
    last_renewal_seconds: float = 0.0  # how long the last renewal took
    reloads: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "refused": 0})
    last_reload: ReloadResult | None = None


_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class Daemon:
    def __init__(self, config_path: str | os.PathLike[str], router: Router | None = None) -> None:
        self.config_path = Path(config_path)
        self.router = router or Router()
        self.cfg: config_mod.Config | None = None
        self.stats = DaemonStats()
        self.lock = threading.Lock()  # the maps change under it; a scrape reads under it
        self._sysctls: dict[str, int] = {}
        self._watched: list[str] = []
        self._pending: list[int] = []
        self._metrics_server: Any = None
        self._reload_seq = 0

    # -- life cycle ------------------------------------------------------

    def run(self) -> int:
        cfg = config_mod.load(self.config_path)  # refused: one line, nothing touched
        wake_r, wake_w = socket.socketpair()
        wake_w.setblocking(False)
        old_handlers = {s: signal.signal(s, lambda n, f: self._pending.append(n)) for s in _SIGNALS}
        old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        events = netlink.Events()  # before the first snapshot: no change falls between
        try:
            self.cfg = cfg
            if cfg.metrics_listen:  # first: a port in use is refused before anything changes
                self._serve_metrics(cfg.metrics_listen)
            with self.lock:
                self._start(cfg)
            self._write_state()
            sd_notify(
                f"READY=1\nMAINPID={os.getpid()}\nSTATUS=attached to {', '.join(self._managed()) or 'nothing yet'}"
            )
            log.info("ready: attached to %s", ", ".join(self._managed()) or "nothing yet (waiting for a match)")
            return self._loop(events, wake_r)
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            events.close()
            wake_r.close()
            wake_w.close()
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
            try:
                if (read_state() or {}).get("pid") == os.getpid():
                    state_path().unlink()
            except OSError:
                pass

    def _start(self, cfg: config_mod.Config) -> None:
        """Attach (or adopt: attach is idempotent, counters kept), apply the
        firewall, take the snapshot."""
        names = self._matching(cfg)
        adopted = [s.name for s in self.router.status() if s.name in names]
        if adopted:
            log.info("adopting the fast path attached to %s (its maps and counters are kept)", ", ".join(adopted))
        if names:
            report = self.router.attach(names, mode=cfg.mode)
            for w in report.warnings:
                log.warning("%s", w)
            for s in report.attached:
                log.info("attached to %s (%s, prog id %d)", s.name, s.mode, s.prog_id)
        self._apply_firewall(cfg)
        self._apply_steer(cfg)
        self._renew("start")

    def _loop(self, events: netlink.Events, wake: socket.socket) -> int:
        assert self.cfg is not None
        now = time.monotonic()
        next_poll = now + self.cfg.sysctl_poll_interval
        next_check = now + self.cfg.recheck_interval
        wd = watchdog_interval()
        next_wd = now + wd if wd else float("inf")
        while True:
            timeout = max(0.0, min(next_poll, next_check, next_wd) - time.monotonic())
            readable, _, _ = select.select([events, wake], [], [], timeout)
            if wake in readable:
                try:
                    wake.recv(512)
                except BlockingIOError:
                    pass
            causes: set[str] = set()
            new_links: set[str] = set()
            if events in readable:
                self._drain(events, causes, new_links)
            while self._pending:
                signum = self._pending.pop(0)
                if signum == signal.SIGHUP:
                    self.reload()
                else:
                    return self._stop(signum)
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + self.cfg.sysctl_poll_interval
                if self._sysctls_changed():
                    causes.add("sysctl")
            if now >= next_check:
                next_check = now + self.cfg.recheck_interval
                causes.add("recheck")
                new_links.update(self._matching(self.cfg))
            if new_links or causes:
                with self.lock:
                    self._attach_new(new_links)
                    self._renew("+".join(sorted(causes)) or "link")
            if now >= next_wd and wd:
                next_wd = now + wd
                sd_notify("WATCHDOG=1")

    def _drain(self, events: netlink.Events, causes: set[str], new_links: set[str]) -> None:
        """Read every event queued now (a burst renews once)."""
        assert self.cfg is not None
        try:
            batch = events.read()
        except OSError as e:  # ENOBUFS: events were lost; the renewal below covers them
            log.warning("netlink events lost (%s): renewing in full", e.strerror or e)
            causes.add("overrun")
            new_links.update(self._matching(self.cfg))
            return
        for ev in batch:
            causes.add(ev.kind)
            if ev.kind == "link" and ev.action == "new" and self.cfg.matches(ev.name):
                new_links.add(ev.name)
            elif ev.kind == "link" and ev.action == "del" and ev.name:
                log.info("%s is gone", ev.name)

    def _stop(self, signum: int) -> int:
        assert self.cfg is not None
        name = signal.Signals(signum).name
        if self.cfg.on_exit == "detach":
            with self.lock:
                gone = self.router.detach(self._managed()) if self._managed() else []
            log.info("%s: detached from %s, exiting", name, ", ".join(gone) or "nothing")
        else:
            log.info("%s: exiting, the fast path stays attached to %s", name, ", ".join(self._managed()) or "nothing")
        sd_notify("STOPPING=1")
        return 0

    # -- keeping the snapshot true -----------------------------------------

    def _matching(self, cfg: config_mod.Config) -> list[str]:
        return [link.name for link in netlink.links() if cfg.matches(link.name)]

    def _managed(self) -> list[str]:
        """Attached interfaces that this configuration covers."""
        assert self.cfg is not None
        return [s.name for s in self.router.status() if self.cfg.matches(s.name)]

    def _attach_new(self, names: set[str]) -> None:
        assert self.cfg is not None
        attached = {s.name for s in self.router.status()}
        alive = {link.name for link in netlink.links()}
        for name in sorted(names - attached):
            if name not in alive:
                continue  # came and went within the batch
            try:
                report = self.router.attach([name], mode=self.cfg.mode)
            except XdpRouterError as e:
                log.error("cannot attach to %s: %s", name, e)
                continue
            for s in report.attached:
                log.info(
                    "attached to %s (%s, prog id %d): it matches %s", s.name, s.mode, s.prog_id, self.cfg.interfaces
                )

    def _renew(self, cause: str) -> None:
        """Take the snapshot again (Router.refresh, without its warnings)."""
        assert self.cfg is not None
        start = time.monotonic()
        self._watched = self._matching(self.cfg)
        self._sysctls = self._read_sysctls()
        try:
            self.router.refresh(warnings=False)
        except UsageError as e:
            if "not attached" not in str(e):
                log.error("renewing the snapshot (%s) failed: %s", cause, e)
            return
        except XdpRouterError as e:
            log.error("renewing the snapshot (%s) failed: %s", cause, e)
            return
        done = time.monotonic()
        self.stats.snapshot_at = done
        self.stats.renewals[cause] = self.stats.renewals.get(cause, 0) + 1
        self.stats.last_renewal_seconds = done - start
        log.debug("snapshot renewed (%s) in %.1f ms", cause, (done - start) * 1e3)

    def _read_sysctls(self) -> dict[str, int]:
        """The sysctls the snapshot copies (snapshot.py's flags), for the
        attached interfaces: no netlink event tells about most of them."""
        keys = ["ipv4/conf/all/send_redirects", "ipv4/conf/all/rp_filter", "ipv6/conf/all/forwarding"]
        for name in self._watched:
            conf = name.replace(".", "/")
            keys += [
                f"ipv4/conf/{conf}/send_redirects",
                f"ipv4/conf/{conf}/rp_filter",
                f"ipv6/conf/{conf}/disable_ipv6",
            ]
        return {k: system.sysctl(k, -1) for k in keys}

    def _sysctls_changed(self) -> bool:
        return self._read_sysctls() != self._sysctls

    # -- the firewall ------------------------------------------------------

    def _apply_firewall(self, cfg: config_mod.Config) -> bool:
        """Make the firewall the config's, unless it is already (a restart
        keeps the rules' counters); True if it was rewritten."""
        if cfg.firewall is None or not self.router.status():
            return False
        if self._firewall_digest() == cfg.firewall_digest():
            return False
        done = Firewall().load_config(cfg.path)
        log.info("firewall: %d rules, %d sets, %d policies", done["rules"], done["sets"], done["policies"])
        return True

    def _firewall_digest(self) -> str | None:
        """The digest of the firewall in force, as Config.firewall_digest()
        computes it, for the sets the config names."""
        try:
            fw = Firewall()
            current = config_mod.Config(path=self.config_path, interfaces=[])
            current.firewall_rules = fw.rules()
            current.firewall_policies = fw.policies()
            sets = {s.name for s in fw.sets()}
            wanted = self.cfg.firewall_sets if self.cfg else {}
            current.firewall_sets = {n: sorted(set(fw.set_prefixes(n))) for n in wanted if n in sets}
            return current.firewall_digest()
        except XdpRouterError:
            return None

    # -- steering rules ----------------------------------------------------

    def _apply_steer(self, cfg: config_mod.Config) -> bool:
        """Make the steering rules the config's [steer] section's, unless they
        are already (their counters then go on); True if they were rewritten."""
        if not cfg.steer or not self.router.status():
            return False
        from .steer import Steering

        steering = Steering()
        current, wanted = steering.rules(), cfg.steer_rules
        if len(current) == len(wanted) and all(
            (c.action, c.cpu, c.match.describe()) == (w.action, w.cpu, w.match.describe())
            and w.queue_size in (None, c.queue_size)
            for c, w in zip(current, wanted, strict=True)
        ):
            return False
        steering.replace([dataclasses.replace(r, id=0) for r in cfg.steer_rules])
        log.info("steering: %d rules", len(cfg.steer_rules))
        return True

    # -- reload ------------------------------------------------------------

    def reload(self) -> ReloadResult:
        """Check the file again in full; refused: nothing changes; accepted:
        firewall (one generation flip), interfaces, then the new config."""
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        assert self.cfg is not None
        try:
            new = config_mod.load(self.config_path)
            with self.lock:
                old = self.cfg
                self.cfg = new  # the digest compares against the new file's sets
                try:
                    self._apply_firewall(new)
                    self._apply_steer(new)  # after the sets its rules may name
                except BaseException:
                    self.cfg = old
                    raise
                self._reconfigure(old, new)
            result = ReloadResult(True, f"reloaded {self.config_path}", time.time())
            log.info("%s", result.message)
        except XdpRouterError as e:
            result = ReloadResult(False, f"reload refused, nothing changed: {e}", time.time())
            log.error("%s", result.message)
        self.stats.reloads["accepted" if result.ok else "refused"] += 1
        self.stats.last_reload = result
        self._reload_seq += 1
        self._write_state()
        sd_notify("READY=1")
        return result

    def _reconfigure(self, old: config_mod.Config, new: config_mod.Config) -> None:
        attached = {s.name: s.mode for s in self.router.status()}
        matching = self._matching(new)
        leaving = [n for n in attached if old.matches(n) and not new.matches(n)]
        if leaving:
            self.router.detach(leaving)
            log.info("detached from %s: no longer in router.interfaces", ", ".join(leaving))
        if new.mode != old.mode and matching:
            self.router.attach(matching, mode=new.mode)
        else:
            self._attach_new(set(matching))
        if new.metrics_listen != old.metrics_listen:
            log.warning("metrics.listen changed: it takes effect when the daemon restarts")
        self._renew("reload")

    # -- metrics and state file --------------------------------------------

    def _serve_metrics(self, listen: tuple[str, int]) -> None:
        from .metrics import serve

        self._metrics_server = serve(listen, self)
        log.info(
            "metrics on http://%s/metrics",
            f"[{listen[0]}]:{listen[1]}" if ":" in listen[0] else f"{listen[0]}:{listen[1]}",
        )

    def _write_state(self) -> None:
        path = state_path()
        last = self.stats.last_reload
        state = {
            "pid": os.getpid(),
            "config": str(self.config_path.resolve()),
            "reload_seq": self._reload_seq,
            "last_reload": None if last is None else {"ok": last.ok, "message": last.message, "time": last.when},
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state))
            tmp.rename(path)
        except OSError as e:
            log.warning("cannot write %s: %s (xdprouter reload will not find this daemon)", path, e.strerror or e)
