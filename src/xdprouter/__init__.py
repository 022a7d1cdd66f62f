"""xdprouter: an XDP fast path for Linux forwarding."""

from .abi import Reason, Verdict
from .errors import BpfError, UsageError, XdpRouterError
from .router import AttachReport, IfaceCounters, IfaceStatus, Router, TestRunResult

__all__ = [
    "AttachReport",
    "BpfError",
    "IfaceCounters",
    "IfaceStatus",
    "Reason",
    "Router",
    "TestRunResult",
    "UsageError",
    "Verdict",
    "XdpRouterError",
]
