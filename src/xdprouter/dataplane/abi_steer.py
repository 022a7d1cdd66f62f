"""The steering rules' ABI (bpf/include/steer.h): what C and Python share.

Steering rules use the firewall's match language and are evaluated after the
firewall lets a frame through and before the router decides where it goes;
the first match hands the frame to another CPU's kernel stack (a cpumap
entry) or to the AF_XDP socket of its ingress queue (an XSKMAP entry).
``cheader.py`` writes these into ``build/abi.h`` with the rest.
"""

from __future__ import annotations

import ctypes
import enum

STEER_MAX_RULES = 64  # a linear scan, first match wins
STEER_MAX_IDS = 256  # rule ids (counters are kept by id, per CPU); 0 is never used
STEER_MAX_CPUS = 64  # cpumap entries: CPUs a rule can name
STEER_XSK_QUEUES = 64  # XSKMAP key: interface stats slot * STEER_XSK_QUEUES + rx queue
STEER_XSK_ENTRIES = 512 * STEER_XSK_QUEUES  # MAX_IFACES slots
STEER_DEFAULT_QSIZE = 2048  # frames a cpumap entry queues for its CPU
STEER_MAX_QSIZE = 16384  # the kernel's limit (cpu_map_update_elem)


class SteerAction(enum.IntEnum):
    CPU = 1  # bpf_redirect_map into xdpr_st_cpus[target]
    XSK = 2  # bpf_redirect_map into xdpr_st_xsk[slot * STEER_XSK_QUEUES + rx queue]


class SteerFlag(enum.IntFlag):
    """Which fields a steering rule names (a field not named matches anything)."""

    PROTO = 1 << 0
    ICMP_TYPE = 1 << 1
    SRC_SET = 1 << 2  # src_set is a firewall set slot (xdpr_fw_sets), not a prefix
    DST_SET = 1 << 3
    SPORT = 1 << 4
    DPORT = 1 << 5
    SRC = 1 << 6  # src/src_mask is a prefix
    DST = 1 << 7


class SteerRule(ctypes.Structure):
    """``xdpr_st_rules[gen * STEER_MAX_RULES + position]``."""

    _fields_ = [
        ("src", ctypes.c_uint32 * 4),  # network-order words, already masked (IPv4: the first word)
        ("src_mask", ctypes.c_uint32 * 4),
        ("dst", ctypes.c_uint32 * 4),
        ("dst_mask", ctypes.c_uint32 * 4),
        ("ifindex", ctypes.c_uint32),  # 0: any interface
        ("id", ctypes.c_uint32),  # the counter's index
        ("target", ctypes.c_uint32),  # cpu: the CPU
        ("src_set", ctypes.c_uint32),
        ("dst_set", ctypes.c_uint32),
        ("flags", ctypes.c_uint16),  # SteerFlag
        ("sport_lo", ctypes.c_uint16),
        ("sport_hi", ctypes.c_uint16),
        ("dport_lo", ctypes.c_uint16),
        ("dport_hi", ctypes.c_uint16),
        ("family", ctypes.c_uint8),  # 0: both, 4 or 6
        ("proto", ctypes.c_uint8),
        ("icmp_type", ctypes.c_uint8),
        ("action", ctypes.c_uint8),  # SteerAction
        ("pad", ctypes.c_uint8 * 2),
    ]


class SteerState(ctypes.Structure):
    """``xdpr_st_state[0]``: is any rule loaded (the one read a frame pays
    without rules), the live generation, each generation's rule count."""

    _fields_ = [
        ("enabled", ctypes.c_uint32),
        ("gen", ctypes.c_uint32),
        ("nrules", ctypes.c_uint32 * 2),
    ]


class SteerCounter(ctypes.Structure):
    """Per rule id, per CPU: frames steered, and frames that matched but
    found no socket (or no CPU entry) and went on as if nothing had matched."""

    _fields_ = [
        ("packets", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("missed", ctypes.c_uint64),
        ("missed_bytes", ctypes.c_uint64),
    ]


# map names: at most 15 characters (BPF_OBJ_NAME_LEN), the kernel cuts the rest
MAP_STEER_STATE = "xdpr_st_state"
MAP_STEER_RULES = "xdpr_st_rules"
MAP_STEER_COUNT = "xdpr_st_count"
MAP_STEER_CPUS = "xdpr_st_cpus"
MAP_STEER_XSK = "xdpr_st_xsk"
STEER_MAPS = (MAP_STEER_STATE, MAP_STEER_RULES, MAP_STEER_COUNT, MAP_STEER_CPUS, MAP_STEER_XSK)

STRUCTS = (SteerRule, SteerState, SteerCounter)
CONSTANTS = ("STEER_MAX_RULES", "STEER_MAX_IDS", "STEER_MAX_CPUS", "STEER_XSK_QUEUES", "STEER_XSK_ENTRIES")
