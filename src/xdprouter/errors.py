"""The project's errors: each one prints as a single line for the CLI."""

from __future__ import annotations

import os


class XdpRouterError(Exception):
    """Any failure the CLI reports as one line and a non-zero exit."""


class BpfError(XdpRouterError):
    """A libbpf/kernel call failed; carries errno and, for loads, the verifier log."""

    def __init__(self, what: str, errno: int, log: str = "", meaning: str = "") -> None:
        self.what = what
        self.errno = errno
        self.log = log
        self.meaning = meaning  # what a refusal by this kernel means for the user, if known
        super().__init__(f"{what}: {os.strerror(errno)}" + (f": {meaning}" if meaning else ""))


class UsageError(XdpRouterError):
    """Bad input: an unknown interface, a foreign program, a missing privilege."""
