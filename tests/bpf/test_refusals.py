"""A kernel that refuses what the project needs says so in one line, with
what it means. Here: BPF_PROG_RUN refused, in a child process whose
syscalls a seccomp filter screens the way a platform that forbids test runs
does (EPERM for the bpf() command BPF_PROG_TEST_RUN, everything else
allowed)."""

from __future__ import annotations

import subprocess
import sys

from xdprouter.lab.traffic import Traffic

_CHILD = """
import ctypes, errno, struct, sys
from xdprouter.dataplane import bpf
from xdprouter.errors import BpfError

# classic BPF over struct seccomp_data: nr at 0, arch at 4, args[0] (low half) at 16
LD, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
NR_BPF, BPF_PROG_TEST_RUN, AUDIT_ARCH_X86_64 = 321, 10, 0xC000003E
prog = [
    (LD, 0, 0, 4), (JEQ, 0, 5, AUDIT_ARCH_X86_64),
    (LD, 0, 0, 0), (JEQ, 0, 3, NR_BPF),
    (LD, 0, 0, 16), (JEQ, 0, 1, BPF_PROG_TEST_RUN),
    (RET, 0, 0, ERRNO | errno.EPERM), (RET, 0, 0, ALLOW),
]
filt = b"".join(struct.pack("HBBI", *insn) for insn in prog)
buf = ctypes.create_string_buffer(filt)
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
fbuf = ctypes.create_string_buffer(fprog)
assert libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fbuf), 0, 0) == 0, ctypes.get_errno()
try:
    bpf.Program(int(sys.argv[1])).test_run(bytes(64))
except BpfError as e:
    print(e)
    sys.exit(3)
"""


def test_a_refused_test_run_says_what_it_means() -> None:
    with Traffic() as traffic:
        fd = traffic.pass_.fd
        assert traffic.pass_.test_run(bytes(64)).retval == 2  # XDP_PASS: allowed here
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(fd)], pass_fds=(fd,), capture_output=True, text=True, timeout=60
        )
    assert child.returncode == 3, child.stderr
    (line,) = child.stdout.splitlines()
    assert line.startswith("BPF_PROG_RUN: Operation not permitted: this kernel refuses to run XDP programs")
