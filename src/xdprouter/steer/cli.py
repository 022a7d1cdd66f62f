"""``xdprouter steer add|del|list|flush``."""

from __future__ import annotations

import argparse
import json

from ..cliargs import RULE_TYPES, ranged_int
from ..dataplane import abi_steer as st
from .rules import add_match_arguments

EXAMPLES = """\
examples:
  xdprouter steer add --action cpu --cpu 1 --proto udp --dport 5353   the kernel handles this service on CPU 1
  xdprouter steer add --action cpu --cpu 1 --queue-size 4096 --src 198.51.100.0/24
  xdprouter steer add --action xsk --iface eth0 --proto udp --dport 4789 --position 0
  xdprouter steer list --json            rules in order, with counters
  xdprouter steer del 3
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "steer",
        help="steering rules: matching frames to another CPU or to an AF_XDP socket (docs/userspace.md)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="steer_command", required=True, metavar="ACTION")
    a = ssub.add_parser("add", help="add a rule (at the end, or at --position)")
    a.add_argument(
        "--action",
        required=True,
        choices=("cpu", "xsk"),
        help="cpu: the kernel's stack on --cpu N; xsk: the AF_XDP socket of the ingress queue",
    )
    a.add_argument("--cpu", type=ranged_int(0, st.STEER_MAX_CPUS - 1), help="with --action cpu: the CPU")
    a.add_argument(
        "--queue-size",
        type=ranged_int(1, st.STEER_MAX_QSIZE),
        help=f"with --action cpu: frames the CPU's queue holds (default {st.STEER_DEFAULT_QSIZE})",
    )
    add_match_arguments(a, RULE_TYPES)
    a.add_argument("--position", type=ranged_int(0, st.STEER_MAX_RULES - 1), help="insert at this position (0: first)")
    d = ssub.add_parser("del", aliases=["delete"], help="delete rules by id")
    d.add_argument("ids", nargs="+", type=ranged_int(1, st.STEER_MAX_IDS - 1), metavar="ID")
    ls = ssub.add_parser("list", help="rules in order, with counters (steered, and missed: no socket on the queue)")
    ls.add_argument("--json", action="store_true")
    ssub.add_parser("flush", help="delete every steering rule")


def command(router: object, args: argparse.Namespace) -> int:
    from .api import Steering
    from .rules import MATCH_FIELDS, SteerRule

    s = Steering()
    cmd = args.steer_command
    if cmd == "add":
        match = {name: getattr(args, name) for name in MATCH_FIELDS}
        rule = SteerRule.parse(args.action, args.cpu, args.queue_size, **match)
        s.add(rule, args.position)
        print(f"steering rule {rule.id}: {rule.describe()}")
    elif cmd in ("del", "delete"):
        s.delete(args.ids)
    elif cmd == "flush":
        s.flush()
    else:
        rows = s.counters()
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            print(f"{'POS':>5} {'ID':>5} {'PACKETS':>12} {'BYTES':>14} {'MISSED':>10}  RULE")
            for r in rows:
                print(
                    f"{r.position:>5} {r.rule.id:>5} {r.packets:>12} {r.bytes:>14} {r.missed:>10}  {r.rule.describe()}"
                )
    return 0
