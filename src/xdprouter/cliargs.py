"""The ``xdprouter`` command's argument types: every number it takes is
checked against a range, and a bad one gets one line naming the option and
the range, before anything is changed."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """Bad input gets one line, as every other error of the command does."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"xdprouter: error: {message} (see `{self.prog} --help`)\n")


@dataclass(frozen=True)
class Ranged:
    """An argparse ``type=``: an int (or a finite float) from ``low`` to
    ``high``; anything else is refused with the allowed range, which argparse
    prefixes with the option's name. ``unit`` only decorates the message."""

    kind: type[int] | type[float]
    low: float
    high: float
    unit: str = ""

    @property
    def allowed(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        low, high = (str(int(x)) if float(x).is_integer() else f"{x:g}" for x in (self.low, self.high))
        return f"{what} from {low} to {high}{' ' + self.unit if self.unit else ''}"

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.allowed}") from None
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {self.allowed}")
        return value


def ranged_int(low: int, high: int, unit: str = "") -> Ranged:
    return Ranged(int, low, high, unit)


def ranged_float(low: float, high: float, unit: str = "") -> Ranged:
    return Ranged(float, low, high, unit)


def port_range(text: str) -> str:
    """An argparse ``type=`` for ``--sport``/``--dport``: a port or LOW-HIGH,
    each 0-65535 (the firewall parses the text itself, as from a file)."""
    lo, sep, hi = text.partition("-")
    if not all(part.isascii() and part.isdigit() for part in ([lo, hi] if sep else [lo])):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535) or a range LOW-HIGH")
    if max(int(lo), int(hi or lo)) > 65535 or int(lo) > int(hi or lo):
        raise argparse.ArgumentTypeError(f"{text} is out of range: ports from 0 to 65535, LOW not above HIGH")
    return text


U32 = (1 << 32) - 1
SECONDS = ranged_float(0.1, 86400, "seconds")  # --watch, reload --timeout
RULE_TYPES: dict[str, object] = {
    "sport": port_range,
    "dport": port_range,
    "pps": ranged_int(1, 1_000_000_000),
    "bps": ranged_int(1, U32),
    "burst": ranged_int(1, U32),
    "burst_bytes": ranged_int(1, U32),
    "block_after": ranged_int(1, U32),
    "block_seconds": ranged_float(0.001, 1e9, "seconds"),
}
