"""``xdprouter firewall``: its arguments and what each action does."""

from __future__ import annotations

import argparse
import json

from ..cliargs import RULE_TYPES, ranged_int
from ..dataplane import abi_fw
from ..errors import XdpRouterError
from .api import Firewall
from .rules import add_rule_arguments, rule_from_args


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``xdprouter firewall ...``."""
    fw = sub.add_parser("firewall", help="rules, prefix sets and rate limits in XDP (see docs/firewall.md)")
    fsub = fw.add_subparsers(dest="fw_command", required=True, metavar="ACTION")
    a = fsub.add_parser("add", help="add a rule (at the end, or at --position)")
    add_rule_arguments(a)
    for action in a._actions:  # the rule's fields, declared in firewall/rules.py: their ranges
        action.type = RULE_TYPES.get(action.dest, action.type)
    a.add_argument("--position", type=ranged_int(0, abi_fw.FW_MAX_RULES - 1), help="insert at this position (0: first)")
    d = fsub.add_parser("delete", help="delete rules by id")
    d.add_argument("ids", nargs="+", type=ranged_int(1, abi_fw.FW_MAX_IDS - 1), metavar="ID")
    fsub.add_parser("flush", help="delete every rule and policy")
    ls = fsub.add_parser("list", help="rules in order, with packet and byte counters")
    ls.add_argument("--json", action="store_true")
    po = fsub.add_parser("policy", help="default policy of an interface")
    po.add_argument("iface")
    po.add_argument("policy", choices=("allow", "drop"))
    ld = fsub.add_parser("load", help="replace the whole firewall with a file's [firewall] section (TOML or JSON)")
    ld.add_argument("file")
    bl = fsub.add_parser("blocked", help="sources blocked by limit rules now")
    bl.add_argument("--json", action="store_true")
    ub = fsub.add_parser("unblock", help="lift blocks made by limit rules")
    ub.add_argument("sources", nargs="*", metavar="ADDRESS")
    ub.add_argument("--all", action="store_true", help="every blocked source")
    st = fsub.add_parser("set", help="named prefix sets")
    ssub = st.add_subparsers(dest="set_command", required=True, metavar="ACTION")
    sl = ssub.add_parser("load", help="create or replace a set from a file (one prefix a line)")
    sl.add_argument("name")
    sl.add_argument("file")
    sd = ssub.add_parser("delete", help="delete an unused set")
    sd.add_argument("name")
    sls = ssub.add_parser("list", help="sets and their sizes")
    sls.add_argument("--json", action="store_true")
    ssh = ssub.add_parser("show", help="a set's prefixes, one a line (as `set load` reads them)")
    ssh.add_argument("name")
    ssh.add_argument("--json", action="store_true")


def command(router: object, args: argparse.Namespace) -> int:
    """Run ``xdprouter firewall ...``."""
    fw = Firewall()
    cmd = args.fw_command
    if cmd == "add":
        rule = rule_from_args(args)
        fw.add(rule, args.position)
        print(f"rule {rule.id}: {rule.describe()}")
    elif cmd == "delete":
        fw.delete(args.ids)
    elif cmd == "flush":
        fw.flush()
    elif cmd == "policy":
        fw.set_policy(args.iface, args.policy)
    elif cmd == "load":
        done = fw.load_config(args.file)
        print(f"loaded {done['rules']} rules, {done['sets']} sets, {done['policies']} policies")
    elif cmd == "list":
        rows = fw.counters()
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            print(f"{'POS':>5} {'ID':>5} {'PACKETS':>12} {'BYTES':>14}  RULE")
            for r in rows:
                what = r.rule.describe()
                print(f"{r.position:>5} {r.rule.id:>5} {r.packets:>12} {r.bytes:>14}  {what}")
    elif cmd == "unblock":
        if args.all == bool(args.sources):
            raise XdpRouterError("name sources to unblock, or --all")
        print(f"unblocked {fw.unblock(None if args.all else args.sources)} source(s)")
    elif cmd == "blocked":
        blocked = fw.blocked()
        if args.json:
            print(json.dumps(blocked, indent=2))
        for b in [] if args.json else blocked:
            print(f"{b['source']:<40} rule {b['rule']:>5}  {b['seconds_left']:.1f} s left")
    elif args.set_command == "load":
        n, seconds = fw.load_set_file(args.name, args.file)
        print(f"set {args.name}: {n} prefixes loaded in {seconds:.2f} s")
    elif args.set_command == "delete":
        fw.delete_set(args.name)
    elif args.set_command == "show":
        prefixes = fw.set_prefixes(args.name)
        print(json.dumps(prefixes, indent=2) if args.json else "\n".join(prefixes))
    else:
        sets = fw.sets()
        if args.json:
            print(json.dumps([{"name": s.name, "prefixes": s.prefixes} for s in sets], indent=2))
        for s in [] if args.json else sets:
            print(f"{s.name:<32} {s.prefixes:>10} prefixes")
    return 0
