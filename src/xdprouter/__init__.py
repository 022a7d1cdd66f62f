"""xdprouter: an XDP fast path for Linux forwarding."""

from .dataplane.abi import Reason, Verdict
from .errors import BpfError, UsageError, XdpRouterError
from .router import AttachReport, IfaceCounters, IfaceStatus, LookupCounters, Router, TestRunResult

__all__ = [
    "AttachReport",
    "BpfError",
    "IfaceCounters",
    "IfaceStatus",
    "LookupCounters",
    "Reason",
    "Router",
    "TestRunResult",
    "UsageError",
    "Verdict",
    "XdpRouterError",
]
