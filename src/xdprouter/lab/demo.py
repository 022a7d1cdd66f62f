"""`make demo`: xdprouter in a three-namespace lab, explained as it runs."""

from __future__ import annotations

import json
import sys

from . import Lab

MB = 1 << 20


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(cmd: str, output: str) -> None:
    print(f"$ {cmd}")
    for line in output.rstrip().splitlines():
        print(f"  {line}")


def main() -> int:
    print(
        "xdprouter demo: three network namespaces joined by veth pairs\n\n"
        "   h1 (10.1.0.2, fd01::2) --- veth1 [ router ] veth2 --- h2 (10.2.0.2, fd02::2)\n\n"
        "The router forwards with the kernel's routes. We attach the XDP fast path to both\n"
        "router interfaces and send traffic both ways: the bulk is forwarded inside XDP,\n"
        "before the kernel allocates anything; ARP/ND and the first packet to a new neighbour\n"
        "go to the kernel (XDP_PASS), which answers as it always does."
    )
    with Lab("xdprdemo") as lab:
        step("attach xdprouter to both router interfaces (a separate process under ip netns exec)")
        out = lab.xdprouter("attach", *lab.router_ifaces)
        show(f"ip netns exec {lab.router} xdprouter attach veth1 veth2", out.stdout + out.stderr)
        show(f"ip netns exec {lab.router} xdprouter status", lab.xdprouter("status").stdout)

        step("ping both ways, IPv4 and IPv6")
        for src, dst in ((lab.h1, lab.h2), (lab.h2, lab.h1)):
            for flag, addr in (("-4", dst.ip4), ("-6", dst.ip6)):
                p = lab.run(src.ns, "ping", flag, "-c", "3", "-i", "0.2", "-W", "2", addr, check=False)
                summary = [line for line in p.stdout.splitlines() if "packets transmitted" in line]
                print(f"  {src.ns} -> {addr}: {summary[0] if summary else p.stderr.strip()}")
                if p.returncode != 0:
                    print("demo failed: ping did not get through", file=sys.stderr)
                    return 1

        step("TCP transfers, checked end to end (SHA-256 of what was sent vs received)")
        for ipv6 in (False, True):
            for src, dst in ((lab.h1, lab.h2), (lab.h2, lab.h1)):
                t = lab.tcp_transfer(src, dst, 8 * MB, ipv6=ipv6)
                fam = "IPv6" if ipv6 else "IPv4"
                verdict = "intact" if t.intact else "CORRUPTED OR SHORT"
                rate = t.received_bytes * 8 / t.seconds / 1e6 if t.seconds else 0.0
                print(f"  {fam} {src.ns} -> {dst.ns}: {t.received_bytes / MB:.0f} MB {verdict}, {rate:.0f} Mbit/s")
                if not t.intact:
                    print("demo failed: the transfer was not intact", file=sys.stderr)
                    return 1

        step("the router's counters (xdprouter stats)")
        show(f"ip netns exec {lab.router} xdprouter stats", lab.xdprouter("stats").stdout)
        stats = json.loads(lab.xdprouter("stats", "--json").stdout)
        fast = sum(s["forwarded"] + s["tx"] for s in stats.values())
        slow = sum(s["passed"] for s in stats.values())
        share = 100.0 * fast / (fast + slow) if fast + slow else 0.0
        print(
            f"\n  {fast} frames were forwarded inside XDP, {slow} were handed to the kernel: "
            f"{share:.2f}% took the fast path.\n"
            "  'passed' frames are the kernel's business by design: neighbour discovery, the first\n"
            "  packet to a neighbour not yet resolved, link-local and multicast traffic."
        )

        step("detach: the router goes back to plain kernel forwarding")
        show(f"ip netns exec {lab.router} xdprouter detach --all", lab.xdprouter("detach", "--all").stdout)
        p = lab.run(lab.h1.ns, "ping", "-c", "1", "-W", "2", lab.h2.ip4, check=False)
        print(f"  ping after detach: {'ok' if p.returncode == 0 else 'FAILED'}")
        if share < 90.0 or p.returncode != 0:
            print("demo failed: the fast path did not carry the bulk", file=sys.stderr)
            return 1
    print("\nlab torn down. Done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
