"""Value objects for input shapes: Resolution, BatchRange, InputShape, Profile. Pure, frozen, JSON round-trip."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rsz_export.errors import UsageError, check_int
from rsz_export.interface import CHANNELS

STRIDE = 32
"""ResNet-50's total downsampling: sizes that are multiples of it waste no padding."""
MIN_SIZE = 32
"""Below 32 pixels the last stage's feature map would be empty: the smallest side ResNet-50 accepts."""
MAX_SIZE = 4096
"""A guard against typos: one 4096x4096 image already needs several GiB of activations."""
MAX_BATCH = 1024

_SIZE_RE = re.compile(r"\s*([0-9]+)\s*(?:[xX]\s*([0-9]+))?\s*")  # used with fullmatch


def is_digits(text: str) -> bool:
    """Whether ``text`` is a whole number written in ASCII digits: ``str.isdigit`` also accepts ``²`` or ``①``,
    which ``int()`` refuses."""
    return text.isascii() and text.isdigit()


def check_side(value: int, what: str = "size") -> int:
    """Return ``value`` if it is an int side length ResNet-50 accepts, else raise UsageError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be a whole number of pixels, got {value!r}")
    if not MIN_SIZE <= value <= MAX_SIZE:
        why = (f"ResNet-50 downsamples by {STRIDE}, so sides below {MIN_SIZE} leave no feature map" if value < MIN_SIZE
               else f"one {MAX_SIZE}x{MAX_SIZE} image already needs several GiB of activations: shrink larger "
               f"images into the range (predict does, with --preprocess fit)")
        raise UsageError(f"{what} {value} is outside what ResNet-50 accepts here: {MIN_SIZE}..{MAX_SIZE} pixels",
                         hint=why)
    return value


@dataclass(frozen=True, order=True)
class Resolution:
    """An image size in pixels, height first."""

    h: int
    w: int

    def __post_init__(self) -> None:
        check_side(self.h, "height")
        check_side(self.w, "width")

    @classmethod
    def parse(cls, text: str) -> Resolution:
        """Parse ``224`` (square) or ``227x341`` (height x width)."""
        match = _SIZE_RE.fullmatch(str(text))
        if not match:
            raise UsageError(f"cannot read size {text!r}: write 224 for a square or 227x341 for height x width")
        h = int(match.group(1))
        w = int(match.group(2)) if match.group(2) else h
        return cls(h, w)

    @property
    def pixels(self) -> int:
        return self.h * self.w

    def __str__(self) -> str:
        return f"{self.h}x{self.w}"


def parse_sizes(text: str) -> list[Resolution]:
    """Parse a comma-separated size list such as ``224,227x341,800``; duplicates are dropped, order kept."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise UsageError(f"no sizes in {text!r}: write a comma-separated list such as 224,227x341")
    return list(dict.fromkeys(Resolution.parse(p) for p in parts))


def parse_sweep(text: str) -> list[Resolution]:
    """Parse ``START:STOP:STEP`` (inclusive) into square sizes, e.g. ``224:800:32``."""
    bits = str(text).split(":")
    try:
        start, stop, step = (int(b) for b in bits)
    except ValueError:
        raise UsageError(f"cannot read sweep {text!r}: write START:STOP:STEP, e.g. 224:800:32") from None
    if step <= 0 or stop < start:
        raise UsageError(f"sweep {text!r} needs STEP > 0 and STOP >= START")
    sides = list(range(start, stop + 1, step))
    if sides[-1] != stop:
        sides.append(stop)
    return [Resolution(s, s) for s in sides]


def parse_batches(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of batch sizes to run, such as ``1,8``; duplicates dropped, order kept."""
    values = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        if not is_digits(part):
            raise UsageError(f"cannot read {part!r} in {text!r}: write whole numbers separated by commas, e.g. 1,8")
        values.append(check_int(int(part), "batch size", 1, MAX_BATCH))
    if not values:
        raise UsageError(f"no batch sizes in {text!r}: write e.g. 1 or 1,8")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes a profile accepts, with the one it is tuned for."""

    min: int = 1
    opt: int = 1
    max: int = 1

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            check_int(getattr(self, name), f"batch {name}", 1, MAX_BATCH)
        if not self.min <= self.opt <= self.max:
            raise UsageError(f"batch needs min <= opt <= max, got {self.min}:{self.opt}:{self.max}")

    @classmethod
    def parse(cls, text: str | int) -> BatchRange:
        """Parse ``8`` (1..8, tuned for 8), ``1-32`` / ``1:32`` (tuned for the max) or ``1:8:32``."""
        bits = re.split(r"[:\-]", str(text).strip())
        try:
            nums = [int(b) for b in bits]
        except ValueError:
            raise UsageError(f"cannot read batch {text!r}: write 8, 1-32 or 1:8:32") from None
        if len(nums) == 1:
            return cls(1, nums[0], nums[0])
        if len(nums) == 2:
            return cls(nums[0], nums[1], nums[1])
        if len(nums) == 3:
            return cls(*nums)
        raise UsageError(f"cannot read batch {text!r}: write 8, 1-32 or 1:8:32")

    def __str__(self) -> str:
        return str(self.max) if self.min == self.opt == self.max == 1 else f"{self.min}:{self.opt}:{self.max}"


@dataclass(frozen=True, order=True)
class InputShape:
    """One NCHW input shape (3 channels)."""

    batch: int
    h: int
    w: int

    @property
    def nchw(self) -> tuple[int, int, int, int]:
        return (self.batch, CHANNELS, self.h, self.w)

    def __str__(self) -> str:
        return "x".join(str(d) for d in self.nchw)


@dataclass(frozen=True)
class Profile:
    """An optimization profile: every input with min <= shape <= max (per dimension) is accepted."""

    min: InputShape
    opt: InputShape
    max: InputShape

    def __post_init__(self) -> None:
        for dim in ("batch", "h", "w"):
            lo, mid, hi = (getattr(s, dim) for s in (self.min, self.opt, self.max))
            if not lo <= mid <= hi:
                raise UsageError(f"profile needs min <= opt <= max in {dim}, got {lo}, {mid}, {hi}")

    def covers(self, batch: int, h: int, w: int) -> bool:
        """Whether an input of this batch and size is inside the profile."""
        return (
            self.min.batch <= batch <= self.max.batch
            and self.min.h <= h <= self.max.h
            and self.min.w <= w <= self.max.w
        )

    @property
    def max_pixels(self) -> int:
        return self.max.h * self.max.w

    def describe(self) -> str:
        """A one-line human description, e.g. ``h,w 224..320 opt 256x256, batch 1..1``."""
        hs = f"{self.min.h}..{self.max.h}"
        ws = f"{self.min.w}..{self.max.w}"
        span = f"h,w {hs}" if hs == ws else f"h {hs} w {ws}"
        return f"{span} opt {self.opt.h}x{self.opt.w}, batch {self.min.batch}..{self.max.batch}"

    def to_dict(self) -> dict:
        return {k: list(getattr(self, k).nchw) for k in ("min", "opt", "max")}

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        def shape(key: str) -> InputShape:
            n, c, h, w = (int(x) for x in data[key])
            if c != CHANNELS:
                raise UsageError(f"profile {key} shape {data[key]} must have {CHANNELS} channels")
            return InputShape(n, h, w)

        try:
            return cls(shape("min"), shape("opt"), shape("max"))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"malformed profile {data!r}: needs min/opt/max NCHW lists ({exc})") from None
