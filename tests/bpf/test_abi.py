"""abi.py (the one definition) against the compiled object: struct layouts
from its BTF, the reason enum from its debug info, map value types."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from xdprouter.dataplane import abi, abi_steer
from xdprouter.router import default_object_path

BtfType = dict[str, Any]


@pytest.fixture(scope="module")
def obj() -> Path:
    return Path(default_object_path())


@pytest.fixture(scope="module")
def btf(obj: Path) -> dict[int, BtfType]:
    if not shutil.which("bpftool"):
        pytest.fail("bpftool is needed to read the object's BTF")
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(obj)], capture_output=True, text=True, check=True)
    return {t["id"]: t for t in json.loads(out.stdout)["types"]}


def named(btf: dict[int, BtfType], kind: str, name: str) -> BtfType:
    found = [t for t in btf.values() if t["kind"] == kind and t.get("name") == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} in the object's BTF"
    return found[0]


def resolve(btf: dict[int, BtfType], type_id: int) -> BtfType:
    """Through typedefs and qualifiers to the real type."""
    t = btf[type_id]
    while t["kind"] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
        t = btf[t["type_id"]]
    return t


def size_of(btf: dict[int, BtfType], type_id: int) -> int:
    t = resolve(btf, type_id)
    if t["kind"] == "ARRAY":
        return int(t["nr_elems"]) * size_of(btf, t["type_id"])
    return int(t["size"])


STRUCTS = [
    pytest.param(abi.IfaceConfig, "iface_config", id="iface_config"),
    pytest.param(abi.Counter, "counter", id="counter"),
    pytest.param(abi.IfaceStats, "iface_stats", id="iface_stats"),
    pytest.param(abi_steer.SteerRule, "steer_rule", id="steer_rule"),
    pytest.param(abi_steer.SteerState, "steer_state", id="steer_state"),
    pytest.param(abi_steer.SteerCounter, "steer_counter", id="steer_counter"),
]


@pytest.mark.parametrize(("cls", "name"), STRUCTS)
def test_struct_layout(btf: dict[int, BtfType], cls: type[ctypes.Structure], name: str) -> None:
    struct = named(btf, "STRUCT", name)
    assert struct["size"] == ctypes.sizeof(cls)
    fields: list[tuple[str, Any]] = cls._fields_  # type: ignore[assignment]
    assert [m["name"] for m in struct["members"]] == [f for f, _ in fields]
    for member, (field, ctype) in zip(struct["members"], fields, strict=True):
        assert member["bits_offset"] == getattr(cls, field).offset * 8, f"{name}.{field} offset"
        assert size_of(btf, member["type_id"]) == ctypes.sizeof(ctype), f"{name}.{field} size"
        t = resolve(btf, member["type_id"])
        if issubclass(ctype, ctypes.Array):
            assert t["kind"] == "ARRAY", f"{name}.{field} is not an array in C"
            assert t["nr_elems"] == ctype._length_, f"{name}.{field} length"
            assert size_of(btf, t["type_id"]) == ctypes.sizeof(ctype._type_), f"{name}.{field} element size"
        else:
            assert t["kind"] == "INT", f"{name}.{field} is not an integer in C"


def test_stats_have_one_counter_per_reason(btf: dict[int, BtfType]) -> None:
    (member,) = named(btf, "STRUCT", "iface_stats")["members"]
    array = resolve(btf, member["type_id"])
    assert array["nr_elems"] == abi.REASON_MAX == len(abi.Reason)
    assert resolve(btf, array["type_id"]).get("name") == "counter"


MAPS = [
    pytest.param(abi.MAP_IFACES, "iface_config", abi.IFACE_ARRAY_SIZE, id="ifaces"),
    pytest.param(abi.MAP_IFACES_HI, "iface_config", abi.MAX_IFACES, id="ifaces_hi"),
    pytest.param(abi.MAP_STATS, "iface_stats", abi.MAX_IFACES, id="stats"),
    pytest.param(abi.MAP_TX_PORTS, None, abi.MAX_IFACES, id="tx_ports"),
    pytest.param(abi.MAP_LOCAL4, None, abi.LOCAL4_SLOTS, id="local4"),
    pytest.param(abi_steer.MAP_STEER_STATE, "steer_state", 1, id="steer_state"),
    pytest.param(abi_steer.MAP_STEER_RULES, "steer_rule", 2 * abi_steer.STEER_MAX_RULES, id="steer_rules"),
    pytest.param(abi_steer.MAP_STEER_COUNT, "steer_counter", abi_steer.STEER_MAX_IDS, id="steer_count"),
    pytest.param(abi_steer.MAP_STEER_CPUS, "bpf_cpumap_val", abi_steer.STEER_MAX_CPUS, id="steer_cpus"),
    pytest.param(abi_steer.MAP_STEER_XSK, None, abi_steer.STEER_XSK_ENTRIES, id="steer_xsk"),
]


@pytest.mark.parametrize(("map_name", "value_struct", "max_entries"), MAPS)
def test_map_definition(btf: dict[int, BtfType], map_name: str, value_struct: str | None, max_entries: int) -> None:
    var = named(btf, "VAR", map_name)
    members = {m["name"]: m for m in resolve(btf, var["type_id"])["members"]}
    # __uint(max_entries, N) is int (*max_entries)[N]
    dims = resolve(btf, btf[members["max_entries"]["type_id"]]["type_id"])
    assert dims["nr_elems"] == max_entries
    if value_struct:
        value = resolve(btf, btf[members["value"]["type_id"]]["type_id"])
        assert (value["kind"], value["name"]) == ("STRUCT", value_struct)


def _dwarf_enum(obj: Path, name: str) -> dict[str, int]:
    tool = shutil.which("llvm-dwarfdump")
    if not tool:
        pytest.fail("llvm-dwarfdump is needed to read the object's debug info")
    text = subprocess.run([tool, "--debug-info", str(obj)], capture_output=True, text=True, check=True).stdout
    match = re.search(r"DW_TAG_enumeration_type\n(?:\s+DW_AT_\w+\t.*\n)*?\s+DW_AT_name\t\(\"" + name + r"\"\)", text)
    assert match, f"enum {name} not in the object's debug info"
    body = text[match.end() :].split("NULL", 1)[0]
    pairs = re.findall(r"DW_AT_name\t\(\"(\w+)\"\)\n\s+DW_AT_const_value\t\((-?\d+)\)", body)
    return {n: int(v) for n, v in pairs}


def _expected_reasons() -> dict[str, int]:
    return {f"REASON_{r.name}": r.value for r in abi.Reason} | {"REASON_MAX": abi.REASON_MAX}


def test_reason_enum_in_debug_info(obj: Path) -> None:
    """The program was compiled against exactly abi.Reason (names and values)."""
    assert _dwarf_enum(obj, "reason") == _expected_reasons()


@pytest.mark.xfail(
    strict=True,
    reason="enum reason is not in the object's BTF: the program uses only its constants "
    "(every reason is an int), and clang emits BTF only for types that variables, maps or "
    "non-inlined functions use",
)
def test_reason_enum_in_btf(btf: dict[int, BtfType]) -> None:
    enum = named(btf, "ENUM", "reason")
    assert {v["name"]: v["val"] for v in enum["values"]} == _expected_reasons()


def test_map_names_fit_the_kernel() -> None:
    """The kernel keeps 15 characters of a map's name (BPF_OBJ_NAME_LEN), and
    commands find the maps by the names it keeps."""
    from xdprouter.dataplane.abi_fw import FW_MAPS

    for name in (*abi.ROUTER_MAPS, *FW_MAPS, *abi_steer.STEER_MAPS):
        assert len(name) <= 15, name
