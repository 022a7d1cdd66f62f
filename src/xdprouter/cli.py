"""The ``xdprouter`` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import tomllib

from . import capture, trace
from .cliargs import SECONDS, Parser, ranged_int
from .dataplane import abi, abi_fw
from .errors import XdpRouterError
from .firewall import cli as fw_cli
from .router import MODES, IfaceCounters, Router
from .steer import cli as steer_cli

EXAMPLES = """\
examples:
  xdprouter attach eth0 eth1             load the fast path, attach to both
  xdprouter attach --mode generic eth2   add a third interface, generic XDP
  xdprouter status --json                what is attached where
  xdprouter refresh                      after address, MAC, sysctl or link changes
  xdprouter stats --watch 1              counters and rates every second
  xdprouter detach --all                 back to plain kernel forwarding
  ip netns exec r1 xdprouter stats       commands work in any namespace
  xdprouter bench --plot bench.png       Linux vs xdprouter, in a lab of its own
  xdprouter firewall add --action drop --src 192.0.2.0/24
  xdprouter firewall list --json         rules in order, with counters
  xdprouter steer add --action cpu --cpu 1 --proto udp --dport 5353   this service's kernel work on CPU 1
  xdprouter config check /etc/xdprouter/xdprouter.toml   check a daemon config, change nothing
  xdprouter daemon --config /etc/xdprouter/xdprouter.toml   keep the fast path true (systemd)
  xdprouter reload                       make the running daemon reread its config
  xdprouter trace eth0 'IP(dst="10.2.0.2")/UDP(dport=53)'   where this packet would go, and Linux's route
  xdprouter capture eth0 --verdict pass -w passed.pcapng     what the fast path gave the kernel, and why
"""


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="xdprouter",
        description="An XDP fast path for Linux forwarding: the kernel's routes, faster.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("attach", help="attach the fast path to interfaces")
    a.add_argument("ifaces", nargs="+", metavar="IFACE")
    a.add_argument("--mode", choices=MODES, default="auto", help="XDP mode (auto: native, else generic)")
    a.add_argument("--force", action="store_true", help="replace another XDP program already attached")

    sub.add_parser("refresh", help="take the attach-time snapshot again (addresses, MACs, sysctls, IPv6 local table)")

    d = sub.add_parser("detach", help="detach from interfaces")
    d.add_argument("ifaces", nargs="*", metavar="IFACE")
    d.add_argument("--all", action="store_true", help="detach from every interface")

    s = sub.add_parser("status", help="what is attached where")
    s.add_argument("--json", action="store_true")

    st = sub.add_parser("stats", help="counters per interface, verdict and reason")
    st.add_argument("--json", action="store_true")
    st.add_argument("--watch", type=SECONDS, metavar="SECONDS", help="repeat every SECONDS, with rates")

    b = sub.add_parser("bench", help="forwarding rate vs Linux in a lab of namespaces (takes a minute or two)")
    b.add_argument("--json", action="store_true")
    b.add_argument("--plot", metavar="PNG", help="write a bar chart")
    b.add_argument(
        "--frames",
        type=ranged_int(1000, 1_000_000_000),
        default=1_000_000,
        help="frames per measurement (64-byte cases)",
    )
    b.add_argument("--reps", type=ranged_int(1, 100), default=3, help="measurements per case and configuration")
    b.add_argument(
        "--routes", type=ranged_int(0, 2_000_000), default=800_000, help="routes in the full-table case (0: skip it)"
    )
    b.add_argument(
        "--firewall", action="store_true", help="also the firewall: drop rate vs nftables, forwarding with rules"
    )
    b.add_argument("--firewall-only", action="store_true", help="only the firewall part")
    b.add_argument("--xsk", nargs="?", type=SECONDS, const=3.0, metavar="SECONDS", help="also xsk vs AF_PACKET reads")
    b.add_argument("--xsk-only", action="store_true", help="only the xsk part (--xsk: its seconds a run)")
    b.add_argument("--profile", action="store_true", help="also where CPU time goes in the 64-byte cases (perf)")
    b.add_argument(
        "--steer",
        action="store_true",
        help="only the steering part: forwarding on the ingress CPU with local UDP traffic steered to another CPU",
    )
    b.add_argument(
        "--fw-rules",
        type=ranged_int(0, abi_fw.FW_MAX_RULES - 1),
        default=10_000,
        help="rules in the firewall forwarding case",
    )
    b.add_argument(
        "--fw-prefixes",
        type=ranged_int(0, abi_fw.FW_MAX_SET_PREFIXES),
        default=1_000_000,
        help="prefixes in its set (0: no set)",
    )
    fw_cli.add_parser(sub)
    _daemon_parser(sub)
    trace.add_parser(sub)
    capture.add_parser(sub)
    steer_cli.add_parser(sub)
    return p


def _daemon_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dm = sub.add_parser("daemon", help="run in the foreground: attach, keep the snapshot true, serve metrics")
    dm.add_argument("--config", required=True, metavar="FILE", help="TOML configuration (docs/daemon.md)")
    dm.add_argument("--verbose", action="store_true", help="also log every snapshot renewal")
    rl = sub.add_parser("reload", help="make the daemon of this namespace reread its configuration")
    rl.add_argument("--timeout", type=SECONDS, default=30.0, metavar="SECONDS")
    cf = sub.add_parser("config", help="daemon configuration files")
    csub = cf.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    ck = csub.add_parser("check", help="check a file in full (interfaces against this namespace), change nothing")
    ck.add_argument("file")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    router = Router()
    try:
        return _COMMANDS[args.command](router, args)
    except XdpRouterError as e:
        print(f"xdprouter: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file named on the command line: missing, unreadable
        where = f": {e.filename}" if e.filename else ""
        print(f"xdprouter: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except tomllib.TOMLDecodeError as e:
        print(f"xdprouter: error: bad configuration file: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _attach(router: Router, args: argparse.Namespace) -> int:
    report = router.attach(args.ifaces, mode=args.mode, force=args.force)
    for w in report.warnings:
        print(f"xdprouter: warning: {w}", file=sys.stderr)
    for s in report.attached:
        print(f"attached to {s.name} ({s.mode}, prog id {s.prog_id})")
    return 0


def _refresh(router: Router, args: argparse.Namespace) -> int:
    report = router.refresh()
    for w in report.warnings:
        print(f"xdprouter: warning: {w}", file=sys.stderr)
    print("refreshed")
    return 0


def _detach(router: Router, args: argparse.Namespace) -> int:
    if args.all == bool(args.ifaces):
        raise XdpRouterError("name interfaces to detach, or --all")
    names = router.detach(None if args.all else args.ifaces)
    for name in names:
        print(f"detached from {name}")
    if args.all and not names:
        print("xdprouter is not attached here")
    return 0


def _status(router: Router, args: argparse.Namespace) -> int:
    rows = router.status()
    main_only = bool(rows) and router.ipv6_main_only()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "iface": r.name,
                        "ifindex": r.ifindex,
                        "mode": r.mode,
                        "prog_id": r.prog_id,
                        "route_hint": r.route_hint,
                        "ipv6_main_table_only": main_only,  # namespace-wide
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print("xdprouter is not attached in this namespace")
        return 0
    print(f"{'IFACE':<16} {'IFINDEX':>7}  {'MODE':<8} {'PROG':>6}  ROUTE HINT")
    for r in rows:
        print(f"{r.name:<16} {r.ifindex:>7}  {r.mode:<8} {r.prog_id:>6}  {'on' if r.route_hint else 'off'}")
    if main_only:
        print("IPv6: destinations outside the local table are looked up in the main table alone")
    else:
        print(
            "IPv6: every lookup walks the local table, then the main table (policy rules, a local prefix, "
            "or the local table changed since attach: `xdprouter refresh` renews its copy)"
        )
    return 0


_VERDICTS = [v.name.lower() for v in abi.Verdict]


def _table(stats: dict[str, IfaceCounters], rates: dict[str, dict[str, float]] | None) -> str:
    lines = [f"{'IFACE':<16}" + "".join(f"{v:>14}" for v in _VERDICTS)]
    for name, c in stats.items():
        lines.append(f"{name:<16}" + "".join(f"{c.packets(v):>14}" for v in abi.Verdict))
        if rates is not None:
            r = rates.get(name, {})
            lines.append(f"{'  pkt/s':<16}" + "".join(f"{r.get(v, 0.0):>14.0f}" for v in _VERDICTS))
        for reason, counter in c.reasons.items():
            if counter.packets and reason != "forward":
                verdict = abi.Reason[reason.upper()].verdict.name.lower()
                lines.append(f"  {reason:<28} {counter.packets:>12} pkts {counter.bytes:>14} bytes  ({verdict})")
    return "\n".join(lines)


def _stats(router: Router, args: argparse.Namespace) -> int:
    if args.watch is None:
        stats = router.stats()
        if args.json:
            print(json.dumps({n: c.as_dict() for n, c in stats.items()}, indent=2))
        elif not stats:
            print("xdprouter is not attached in this namespace")
        else:
            print(_table(stats, None))
        return 0
    # Ctrl-C sets a flag read between samples, so it never lands inside a
    # netlink call (pyroute2 does not survive being interrupted there).
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    prev, t_prev = router.stats(), time.monotonic()
    while True:
        deadline = time.monotonic() + args.watch
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.05, args.watch))
        if stop:
            return 130
        cur, t_cur = router.stats(), time.monotonic()
        dt = t_cur - t_prev
        rates = {
            n: {v.name.lower(): (c.packets(v) - prev[n].packets(v)) / dt for v in abi.Verdict}
            for n, c in cur.items()
            if n in prev
        }
        if args.json:
            out = {n: {**c.as_dict(), "rates": rates.get(n, {})} for n, c in cur.items()}
            print(json.dumps(out), flush=True)
        else:
            print(f"\n{time.strftime('%H:%M:%S')}\n{_table(cur, rates)}", flush=True)
        prev, t_prev = cur, t_cur


def _bench(router: Router, args: argparse.Namespace) -> int:
    from .lab.bench import main_bench

    if args.steer:
        from .lab import steerbench

        report = steerbench.run(args.frames, args.reps, log=lambda s: print(s, file=sys.stderr))
        print(json.dumps(report.as_dict(), indent=2) if args.json else steerbench.table(report))
        return 0

    fw = (args.fw_rules, args.fw_prefixes) if args.firewall or args.firewall_only else None
    xsk = args.xsk or (3.0 if args.xsk_only else None)
    parts = (fw, args.firewall_only, args.profile, xsk, args.xsk_only)
    return main_bench(args.json, args.plot, args.frames, args.reps, args.routes, *parts)


def _daemon(router: Router, args: argparse.Namespace) -> int:
    from .daemon import Daemon
    from .service import setup_logging

    setup_logging(args.verbose)
    return Daemon(args.config, router).run()


def _reload(router: Router, args: argparse.Namespace) -> int:
    from .service import request_reload

    result = request_reload(args.timeout)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _config(router: Router, args: argparse.Namespace) -> int:
    from . import config

    cfg = config.load(args.file)
    rules = len(cfg.firewall_rules) if cfg.firewall is not None else "no"
    print(f"{args.file}: ok ({len(cfg.interfaces)} interface patterns, {rules} firewall rules)")
    return 0


_COMMANDS = {
    "attach": _attach,
    "refresh": _refresh,
    "detach": _detach,
    "status": _status,
    "stats": _stats,
    "bench": _bench,
    "firewall": fw_cli.command,
    "daemon": _daemon,
    "reload": _reload,
    "config": _config,
    "trace": trace.command,
    "capture": capture.command,
    "steer": steer_cli.command,
}

if __name__ == "__main__":
    sys.exit(main())
