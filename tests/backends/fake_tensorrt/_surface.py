"""The published API surface of one TensorRT version, read from ``tests/data/tensorrt-api/<version>.txt``.

Those files list every class, member and enum value of the real Python bindings (they were read off the
binding wheels by importing them; tests/backends/test_trt_api_surface.py checks the backend against the same
files). The double uses them twice: enum members and
their integer values come straight from them, and any member the double implements is hidden (AttributeError)
in a version whose surface lacks it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

SURFACE_DIR = Path(__file__).resolve().parents[2] / "data" / "tensorrt-api"


@dataclass(frozen=True)
class Surface:
    version: str
    names: frozenset  # "Class", "Class.member", "Enum.MEMBER"
    enums: dict  # enum path ("BuilderFlag", "ILogger.Severity") -> {member: int}

    def has(self, name: str) -> bool:
        return name in self.names


def known_versions() -> list[str]:
    return sorted(p.stem for p in SURFACE_DIR.glob("*.txt"))


@functools.cache
def load(version: str) -> Surface:
    path = SURFACE_DIR / f"{version}.txt"
    if not path.is_file():
        raise ValueError(f"no API surface for TensorRT {version}; known: {', '.join(known_versions())}")
    names, enums = set(), {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if " = " in line:
            left, value = line.split(" = ", 1)
            owner, member = left.rsplit(".", 1)
            value = value.strip()
            enums.setdefault(owner, {})[member] = int(value) if value.lstrip("-").isdigit() else None
            names.add(left)
        else:
            names.add(line.split()[0])
    for owner, members in enums.items():
        for member, value in members.items():
            if value is None:  # '= ?': the value was not read for this version; take it from a sibling release
                members[member] = _sibling_value(version, owner, member)
    return Surface(version, frozenset(names), enums)


def _sibling_value(version: str, owner: str, member: str) -> int:
    """The value of an enum member in another release of the same major (enum values are stable within a
    major; they were renumbered only between 10 and 11, TENSORRT.md section 9)."""
    major = version.split(".")[0]
    for other in sorted(known_versions(), reverse=True):
        if other != version and other.split(".")[0] == major:
            value = load(other).enums.get(owner, {}).get(member)
            if value is not None:
                return value
    raise ValueError(f"no value known for {owner}.{member} in TensorRT {major}.x")


def in_any(name: str) -> bool:
    """True when some known version's surface has ``name`` (the double never invents API names)."""
    return any(load(v).has(name) for v in known_versions())
