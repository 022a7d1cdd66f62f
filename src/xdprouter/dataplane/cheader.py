"""build/abi.h, generated from abi.py, abi_fw.py and abi_steer.py: ``python -m xdprouter.dataplane.cheader``."""

from __future__ import annotations

import ctypes
import re
import sys

from . import abi, abi_fw, abi_steer

_C_TYPES = {
    ctypes.c_uint8: "__u8",
    ctypes.c_uint16: "__u16",
    ctypes.c_uint32: "__u32",
    ctypes.c_uint64: "__u64",
    ctypes.c_int32: "__s32",
    ctypes.c_int64: "__s64",
}


def _c_field(name: str, ctype: type) -> str:
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
        inner = ctype._type_  # type: ignore[attr-defined]
        length = ctype._length_  # type: ignore[attr-defined]
        if isinstance(inner, type) and issubclass(inner, ctypes.Structure):
            base = f"struct {_c_struct_name(inner)}"
        else:
            base = _C_TYPES[inner]
        return f"\t{base} {name}[{length}];"
    return f"\t{_C_TYPES[ctype]} {name};"


def _c_struct_name(struct: type) -> str:
    """CamelCase to the C name: IfaceConfig -> iface_config."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", struct.__name__).lower()


def c_header() -> str:
    """The C header generated from this module (build/abi.h)."""
    out = [
        "/* SPDX-License-Identifier: GPL-2.0 */",
        "/* Generated from src/xdprouter/dataplane/abi*.py by `python -m xdprouter.dataplane.cheader`. Do not edit. */",
        "#ifndef XDPR_ABI_H",
        "#define XDPR_ABI_H",
        "",
        "#include <linux/types.h>",
        "",
        "enum verdict {",
    ]
    out += [f"\tVERDICT_{v.name} = {v.value}," for v in abi.Verdict]
    out += ["};", "", "enum reason {"]
    out += [f"\tREASON_{r.name} = {r.value},  /* {r.verdict.name.lower()} */" for r in abi.Reason]
    out += [f"\tREASON_MAX = {abi.REASON_MAX},", "};", "", "enum iface_flag {"]
    out += [f"\tIFACE_{f.name} = {f.value}," for f in abi.IfaceFlag]
    out += ["};", "", f"#define MAX_IFACES {abi.MAX_IFACES}", f"#define UNCONFIGURED_SLOT {abi.UNCONFIGURED_SLOT}"]
    out += [f"#define IFACE_ARRAY_SIZE {abi.IFACE_ARRAY_SIZE}", f"#define GEN_HDR_LEN {abi.GEN_HDR_LEN}"]
    out += [
        f"#define CAPTURE_ANY_REASON {abi.CAPTURE_ANY_REASON:#x}u",
        f"#define CAPTURE_SNAPLEN_MAX {abi.CAPTURE_SNAPLEN_MAX:#x}",
    ]
    out += [f"#define GEN_SLOTS {abi.GEN_SLOTS}", f"#define GEN_COUNTS {abi.GEN_COUNTS}"]
    out += [f"#define LOOP_STATES {abi.LOOP_STATES}"]
    out += ["enum loop_state_slot {"] + [f"\tLOOP_STATE_{s.name} = {s.value}," for s in abi.LoopStateSlot] + ["};"]
    out += ["enum gen_slot {"] + [f"\tGEN_{s.name} = {s.value}," for s in abi.GenSlot] + ["};"]
    out += ["enum gen_count {"] + [f"\tGEN_COUNT_{c.name} = {c.value}," for c in abi.GenCount] + ["};"]
    out += [f"#define LOCAL4_{k} {v}" for k, v in (("BITS", abi.LOCAL4_BITS), ("SLOTS", abi.LOCAL4_SLOTS))]
    out += [f"#define LOCAL4_PROBES {abi.LOCAL4_PROBES}", f"#define LOCAL4_MULT {abi.LOCAL4_MULT:#x}u"]
    out += [f"#define LOCAL6_{k} {v}" for k, v in (("BITS", abi.LOCAL6_BITS), ("SLOTS", abi.LOCAL6_SLOTS))]
    out += [f"#define LOCAL6_PROBES {abi.LOCAL6_PROBES}"]
    out += [f"#define FIB_KEY_WORDS {abi.FIB_KEY_WORDS}", ""]
    out += ["enum fib6_local {"] + [f"\tFIB6_LOCAL_{f.name} = {f.value}," for f in abi.Fib6Local] + ["};", ""]
    for name in (
        "FW_MAX_RULES FW_WORDS FW_SUMMARY_WORDS FW_MAX_IDS FW_MAX_BITMAPS FW_PORT_SLOTS FW_NOPORT FW_MAX_SETS "
        "FW_MAX_REFS FW_MAX_SET_PREFIXES FW_LIMIT_ENTRIES FW_BLOCK_ENTRIES FW_ANY_PROTO FW_MAX_STEPS FW_EMPTY_BITMAP "
        "FW_NAMES_IFACE FW_NAMES_PROTO FW_NAMES_SRC FW_NAMES_DST FW_NAMES_SPORT FW_NAMES_DPORT FW_ICMP_SLOT "
        "FW_PRE_V4_BITS FW_PRE_V6_BITS FW_PRE_V4_WORDS FW_PRE_V6_WORDS FW_PRE_SRC4 FW_PRE_DST4 "
        "FW_PRE_SRC6 FW_PRE_DST6 FW_PRE_SPORT FW_PRE_DPORT FW_PRE_PROTO FW_PRE_GEN_WORDS FW_SET_PRE_WORDS "
        "FW_PRE_V4_COARSE_SHIFT FW_PRE_V6_COARSE_SHIFT FW_PRE_SRC4C FW_PRE_DST4C FW_PRE_SRC6C FW_PRE_DST6C "
        "FW_SET_PRE_V4C FW_SET_PRE_V6C FW_SET_PRE_V4 FW_SET_PRE_V6 FW_SET_LEAF_BYTES FW_BLOCK_HINT_BITS "
        "FW_BLOCK_HINT_WORDS"
    ).split():
        out.append(f"#define {name} {getattr(abi_fw, name)}")
    out.append(f"#define FW_PRE_V6_MULT {abi_fw.FW_PRE_V6_MULT:#x}u")
    out.append(f"#define FW_SET_LEAF_16 {abi_fw.FW_SET_LEAF_16:#x}u")
    out.append(f"#define FW_DIR16_TRIE {abi_fw.FW_DIR16_TRIE:#x}u")
    out.append(f"#define FW_DIR16_SLOTS {abi_fw.FW_DIR16_SLOTS}")
    out += ["", "enum fw_action {"]
    out += [f"\tFW_{a.name} = {a.value}," for a in abi_fw.FwAction]
    out += ["};", "", "enum fw_pre {"]
    out += [f"\tFW_PRE_HAS_{f.name} = {f.value}," for f in abi_fw.FwPre]
    out += ["};", "", "enum fw_rule_flag {"]
    out += [f"\tFW_RULE_{f.name} = {f.value}," for f in abi_fw.FwRuleFlag]
    out += ["};", ""]
    out += [f"#define {name} {getattr(abi_steer, name)}" for name in abi_steer.CONSTANTS]
    out += ["enum steer_action {"] + [f"\tSTEER_{a.name} = {a.value}," for a in abi_steer.SteerAction] + ["};"]
    out += ["enum steer_flag {"] + [f"\tSTEER_HAS_{f.name} = {f.value}," for f in abi_steer.SteerFlag] + ["};", ""]
    structs = (
        abi.IfaceConfig,
        abi.Counter,
        abi.IfaceStats,
        abi.GenConfig,
        abi.LoopState,
        abi.CaptureConfig,
        abi.CaptureMeta,
        abi_fw.FwSetInfo,
        abi_fw.FwState,
        abi_fw.FwGen,
        abi_fw.FwRule,
        abi_fw.FwBitmap,
        abi_fw.FwSummary,
        abi_fw.FwLpmKey,
    )
    structs += (
        abi_fw.FwIfprotoKey,
        abi_fw.FwPolicyKey,
        abi_fw.FwSetLeaf,
        abi_fw.FwLimitKey,
        abi_fw.FwLimitState,
        abi_fw.FwBlockKey,
        abi_fw.FwBlock,
        abi.FibHint,
        abi.Local6Addr,
        abi.Local6State,
        abi.Fib6Probe,
        *abi_steer.STRUCTS,
    )
    for struct in structs:
        out.append(f"struct {_c_struct_name(struct)} {{")
        out += [_c_field(name, ctype) for name, ctype in struct._fields_]  # type: ignore[misc]
        out += ["};", f'_Static_assert(sizeof(struct {_c_struct_name(struct)}) == {ctypes.sizeof(struct)}, "abi");', ""]
    out += _functions()
    out += ["#endif", ""]
    return "\n".join(out)


def _functions() -> list[str]:
    """The tables written as C functions: each reason's XDP action, the protocols with ports."""
    out = ["/* What the program returns for each reason (abi.py OUTCOMES). */"]
    out += ["static inline __attribute__((always_inline)) int reason_action(int reason)", "{", "\tswitch (reason) {"]
    passed = abi.XdpAction.PASS
    order = [
        r for r in abi.OUTCOMES if r.action is not passed
    ]  # same actions together: the switch clang compiled before (its stack use is near 512 bytes)
    for reason, following in zip(order, [*order[1:], None], strict=True):
        out.append(f"\tcase REASON_{reason.name}:")
        if following is None or following.action is not reason.action:
            out.append(f"\t\treturn {reason.action.value};\t/* XDP_{reason.action.name} */")
    out += [f"\tdefault:\n\t\treturn {abi.XdpAction.PASS.value};\t/* XDP_PASS */", "\t}", "}", ""]
    out += ["/* Does the transport header start with a source and a destination port (abi.py PORT_PROTOS)? */"]
    out += ["static inline __attribute__((always_inline)) int l4_has_ports(__u8 proto)", "{"]
    out.append("\treturn " + " || ".join(f"proto == {p}" for p in abi.PORT_PROTOS) + ";")
    out += ["}", ""]
    return out


if __name__ == "__main__":
    sys.stdout.write(c_header())
