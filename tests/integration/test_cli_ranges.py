"""Every numeric option of every subcommand refuses what it cannot use: found
from the parser itself (a new option is covered without touching this file),
each given bad values (negative, zero where meaningless, huge, not a number)
as a separate process in an attached lab with a firewall rule; each must exit
non-zero at once with one line naming the option and its range, and leave
everything as it was."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from xdprouter import cli, cliargs
from xdprouter.lab import Lab

from .test_cli import snapshot

Option = tuple[list[str], argparse.Action]  # (subcommand path, the action)


def _walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[Option]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, [*path, name])
        elif action.type is not None:
            yield path, action


def typed_options() -> list[Option]:
    return list(_walk(cli._parser(), []))


def option_id(opt: Option) -> str:
    path, action = opt
    return " ".join([*path, action.option_strings[-1] if action.option_strings else action.dest])


def bad_values(kind: object) -> list[str]:
    if kind is cliargs.port_range:
        return ["-1", "65536", "http", "9-3", "1-2-3", "99999999999999999999"]
    assert isinstance(kind, cliargs.Ranged), kind
    values = ["-1", "abc", "1" + "0" * 30]
    if kind.low > 0:
        values.append("0")
    if kind.kind is int:
        values += [str(int(kind.low) - 1), str(int(kind.high) + 1), "1.5"]
    else:
        values += [f"{kind.low / 2:g}" if kind.low > 0 else "-0.5", f"{kind.high * 2:g}", "nan", "inf", "-inf"]
    return list(dict.fromkeys(values))


def test_every_numeric_option_is_ranged() -> None:
    """No option reads a bare int or float: each goes through cliargs.Ranged (or
    the port type), and the bounds themselves are accepted."""
    opts = typed_options()
    names = {option_id(o) for o in opts}
    for expected in (
        "stats --watch",
        "bench --frames",
        "bench --reps",
        "bench --routes",
        "firewall add --pps",
        "firewall add --bps",
        "firewall add --burst",
        "firewall add --block-for",
        "firewall add --position",
        "firewall add --dport",
        "firewall delete ids",
        "reload --timeout",
    ):
        assert expected in names, sorted(names)
    for opt in opts:
        kind = opt[1].type
        assert kind is cliargs.port_range or isinstance(kind, cliargs.Ranged), f"{option_id(opt)}: type {kind!r}"
        if isinstance(kind, cliargs.Ranged):
            for good in (kind.low, kind.high):
                assert kind(str(kind.kind(good))) == good


def _cases() -> list[tuple[str, str, list[str], str]]:
    out = []
    for opt in typed_options():
        path, action = opt
        for value in bad_values(action.type):
            # --opt=VALUE and -- VALUE: "-inf" is a value, not an option
            argv = [*path, f"{action.option_strings[-1]}={value}"] if action.option_strings else [*path, "--", value]
            out.append(
                (option_id(opt), value, argv, action.option_strings[-1] if action.option_strings else action.metavar)
            )
    return out


def test_bad_numbers_refused_at_once_nothing_changed(attached_lab: Lab) -> None:
    lab = attached_lab
    lab.xdprouter("firewall", "add", "--action", "drop", "--src", "192.0.2.0/24")
    rules = lab.xdprouter("firewall", "list", "--json").stdout
    before = snapshot(lab)
    assert len(before[0]) == 2
    t0 = time.monotonic()
    lab.xdprouter("bench", "--help")  # the cost of starting the command at all
    startup = time.monotonic() - t0
    cases = _cases()
    assert len(cases) > 60
    for name, value, argv, shown in cases:
        t0 = time.monotonic()
        try:
            proc = lab.run(lab.router, sys.executable, "-m", "xdprouter.cli", *argv, check=False, timeout=startup + 5)
        except subprocess.TimeoutExpired:  # it spins, waits or went to work
            pytest.fail(f"{name} {value}: still running after {startup + 5:.1f} s")
        elapsed = time.monotonic() - t0
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert elapsed < startup + 1, (argv, elapsed)
        assert proc.stdout == "", (argv, proc.stdout)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (argv, proc.stderr)
        assert lines[0].startswith(f"xdprouter: error: argument {shown}: "), lines[0]
        assert " to " in lines[0], lines[0]  # the allowed range
    assert snapshot(lab) == before
    assert lab.xdprouter("firewall", "list", "--json").stdout == rules
    assert len(json.loads(rules)) == 1
