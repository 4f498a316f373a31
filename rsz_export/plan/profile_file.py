"""Profile files: deployment targets as TOML (``profiles/*.toml``), read and checked, or written from a plan.

A file gives a range (``min``, ``max``) and optionally ``profiles``, ``batch``, ``aspect``, ``precision``,
``outputs`` (what the model gives: ``logits``, or a backbone's ``features``/``fpn`` maps), ``name``,
``description`` and an explicit ``[[profile]]`` list (min/opt/max as ``HxW``). Every problem is a
UsageError naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from rsz_export.errors import UsageError, check_choice, read_small_file, shown
from rsz_export.interface import DEFAULT_OUTPUTS, DEFAULT_PRECISION, OUTPUT_KINDS, PRECISIONS
from rsz_export.plan.profiles import Plan, PlanSpec, plan_profiles
from rsz_export.shapes import BatchRange, InputShape, Profile, Resolution


@dataclass(frozen=True)
class ProfileFile:
    """A deployment target read from ``profiles/NAME.toml``."""

    name: str
    description: str
    spec: PlanSpec
    precision: str = DEFAULT_PRECISION
    explicit: tuple[Profile, ...] = ()
    outputs: str = DEFAULT_OUTPUTS

    def plan(self) -> Plan:
        """The profiles this file asks for: its explicit list if it has one, else planned from its range."""
        if not self.explicit:
            return plan_profiles(self.spec)
        return replace(plan_profiles(replace(self.spec, profiles=None)), profiles=self.explicit)


_FILE_KEYS = {"name", "description", "min", "max", "profiles", "batch", "aspect", "precision", "profile", "outputs"}


def load_profile_file(path: str | Path) -> ProfileFile:
    """Read and check a profile TOML file; every problem is a UsageError naming the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(read_small_file(path, f"profile file {shown(path)}").decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"profile file {shown(path)} does not exist", hint="see profiles/ for examples") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read profile file {shown(path)}: {exc}") from None
    return profile_file_from_dict(data, source=str(path))


def profile_file_from_dict(data: dict, source: str = "<profile>") -> ProfileFile:
    """Check a parsed profile file (see ``profiles/*.toml``) and turn it into a ProfileFile."""
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FILE_KEYS))}")
    try:
        spec = PlanSpec(
            min_size=data["min"],
            max_size=data["max"],
            profiles=data.get("profiles"),
            batch=BatchRange.parse(data.get("batch", 1)),
            aspect=data.get("aspect", "free"),
        )
    except KeyError as exc:
        raise UsageError(f"{source}: missing key {exc.args[0]!r} (min and max are required)") from None
    except UsageError as exc:
        raise UsageError(f"{source}: {exc.message}", exc.hint) from None
    precision = data.get("precision", DEFAULT_PRECISION)
    outputs = data.get("outputs", DEFAULT_OUTPUTS)
    try:
        check_choice(precision, "precision", PRECISIONS)
        check_choice(outputs, "outputs", OUTPUT_KINDS)
    except UsageError as exc:
        raise UsageError(f"{source}: {exc.message}") from None
    explicit = tuple(_explicit_profile(p, spec, source) for p in data.get("profile", []))
    name = str(data.get("name", Path(source).stem))
    return ProfileFile(name, str(data.get("description", "")), spec, precision, explicit, outputs)


def _explicit_profile(entry: dict, spec: PlanSpec, source: str) -> Profile:
    try:
        lo, opt, hi = (Resolution.parse(str(entry[k])) for k in ("min", "opt", "max"))
    except KeyError as exc:
        raise UsageError(f"{source}: a [[profile]] entry lacks {exc.args[0]!r}") from None
    b = spec.batch
    profile = Profile(InputShape(b.min, lo.h, lo.w), InputShape(b.opt, opt.h, opt.w), InputShape(b.max, hi.h, hi.w))
    if lo.h < spec.min_size or lo.w < spec.min_size or hi.h > spec.max_size or hi.w > spec.max_size:
        raise UsageError(
            f"{source}: profile {profile.describe()} lies outside min..max {spec.min_size}..{spec.max_size}"
        )
    return profile


def plan_to_toml(plan: Plan, name: str, description: str, precision: str = DEFAULT_PRECISION, comment: str = "") -> str:
    """A profile file holding this plan's range and explicit profiles; checked by reading it back."""
    check_choice(precision, "precision", PRECISIONS)
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [
        f"name = {_quote(name)}",
        f"description = {_quote(description)}",
        f"min = {plan.min_size}",
        f"max = {plan.max_size}",
        f"profiles = {len(plan.profiles)}",
        f'batch = "{plan.batch.min}:{plan.batch.opt}:{plan.batch.max}"',
        f'aspect = "{plan.aspect}"',
        f'precision = "{precision}"',
    ]
    for p in plan.profiles:
        lines += [
            "",
            "[[profile]]",
            f'min = "{Resolution(p.min.h, p.min.w)}"',
            f'opt = "{Resolution(p.opt.h, p.opt.w)}"',
            f'max = "{Resolution(p.max.h, p.max.w)}"',
        ]
    text = "\n".join(lines) + "\n"
    profile_file_from_dict(tomllib.loads(text), source=f"<generated {name}>")
    return text


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def resolve_plan(
    min_size: int | None,
    max_size: int | None,
    profiles: int | None = None,
    batch: str = "1",
    aspect: str = "free",
    profile_file: str | Path | None = None,
) -> tuple[Plan, str | None]:
    """The plan asked for by either a profile file or a range, and the file's precision (None for a range)."""
    if profile_file:
        if min_size is not None or max_size is not None:
            raise UsageError("give either --profile-file or --min/--max, not both")
        loaded = load_profile_file(profile_file)
        return loaded.plan(), loaded.precision
    if min_size is None or max_size is None:
        raise UsageError("give the range with --min and --max (e.g. --min 224 --max 800), or a --profile-file")
    try:
        batch_range = BatchRange.parse(batch)
    except UsageError as exc:
        raise UsageError(f"--batch: {exc.message}", exc.hint) from None
    return plan_profiles(PlanSpec(min_size, max_size, profiles, batch_range, aspect)), None


def resolve_outputs(outputs: str | None, profile_file: str | Path | None = None) -> str:
    """What a build's model gives: ``--outputs`` when given, else the profile file's ``outputs``, else logits."""
    if outputs is not None:
        return outputs
    return load_profile_file(profile_file).outputs if profile_file else DEFAULT_OUTPUTS
