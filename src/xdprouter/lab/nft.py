"""nftables rules for the firewall benchmark: the same drop as xdprouter's, at nftables' earliest hooks."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator

from . import Lab

NFT_TABLE = "xdprbench"


@contextlib.contextmanager
def nft_drop(lab: Lab, config: str, src: str) -> Iterator[Callable[[], int]]:
    """The rule ``ip saddr SRC counter drop`` in nftables on the router, at
    the netdev ingress hook of veth1 or in inet prerouting at raw priority;
    yields a function that reads the rule's packet counter."""
    if config == "nft-ingress":
        family = "netdev"
        chain = 'type filter hook ingress device "veth1" priority -500; policy accept;'
    else:
        family = "inet"
        chain = "type filter hook prerouting priority raw; policy accept;"
    ruleset = f"table {family} {NFT_TABLE} {{\n chain c {{\n  {chain}\n  ip saddr {src} counter drop\n }}\n}}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as fh:
        fh.write(ruleset)
        fh.flush()
        lab.run(lab.router, "nft", "-f", fh.name)

    def packets() -> int:
        out = lab.run(lab.router, "nft", "-j", "list", "table", family, NFT_TABLE).stdout
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        raise RuntimeError("no counter in the nft rule")

    try:
        yield packets
    finally:
        lab.run(lab.router, "nft", "delete", "table", family, NFT_TABLE, check=False)
