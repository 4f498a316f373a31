"""The preprocessing policy: how a decoded image becomes the model's input, and where it runs. One
implementation for every command that turns an image into an input (predict, sweep, and servers).

* ``native``: the image at its own size when a profile covers it; refused (naming the covered range) otherwise.
* ``fit``: the whole image, aspect ratio kept, at its own size when covered, else resized by the scale closest
  to 1 that fits a profile (big photos shrink into the largest profile, thumbnails grow to the range minimum).
  With ``size`` S, the wanted scale is the one that makes the shorter side S (then fitted the same way).
  An aspect ratio no profile can hold (a 20000x10 panorama in 224..800) is refused with a hint to crop.
* ``crop``: the weights' own evaluation transform at ``size`` (HxW): resize so the image covers
  size / ``crop_ratio`` (shorter side 256 for 224 with 0.875), keep the centre. Default size: the plan's
  first opt point (``for_plan``).

``stride="snap"`` (native and fit) rounds each side to a multiple of 32 before routing. A server that holds
the plan but no Session turns an image into a feed with ``Preprocess("fit").prepare(image,
plan_candidates(plan))``. Pure: numpy and Pillow are imported when an image is prepared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rsz_export.errors import UsageError, check_choice, check_number
from rsz_export.images.imagenet import CROP_RATIO
from rsz_export.plan.routing import STRIDE_POLICIES, Candidate, Route, choose_route, covered_text
from rsz_export.shapes import Resolution

PREPROCESS_MODES = ("native", "fit", "crop")


@dataclass(frozen=True, eq=False)
class ModelInput:
    """A decoded image made ready: its original (h, w), where it runs, what was done to it, and the feed
    (float32 [1, 3, h, w], ImageNet-normalised)."""

    original: tuple[int, int]
    route: Route
    resize: str
    array: Any


@dataclass(frozen=True)
class Preprocess:
    """One preprocessing policy (see the module docstring)."""

    mode: str = "native"
    size: Resolution | None = None
    stride: str = "exact"
    crop_ratio: float = CROP_RATIO

    def __post_init__(self) -> None:
        check_choice(self.mode, "preprocess policy", PREPROCESS_MODES)
        check_choice(self.stride, "stride policy", STRIDE_POLICIES)
        check_number(self.crop_ratio, "crop ratio", 0.1, 1.0)
        if self.mode == "native" and self.size is not None:
            raise UsageError("preprocess native runs each image at its own size: a size applies to fit and crop")
        if self.mode == "fit" and self.size is not None and self.size.h != self.size.w:
            raise UsageError(f"preprocess fit takes one side (the shorter side's length), got {self.size}")
        if self.mode == "crop" and self.stride == "snap":
            raise UsageError("stride snap applies to native and fit; crop runs at its size exactly")

    def for_plan(self, plan) -> Preprocess:
        """This policy with crop's default size filled in: the plan's first opt point."""
        if self.mode != "crop" or self.size is not None:
            return self
        opt = plan.profiles[0].opt
        return replace(self, size=Resolution(opt.h, opt.w))

    def describe(self) -> str:
        return self.mode if self.size is None else f"{self.mode} {self.size.h if self.mode == 'fit' else self.size}"

    def route(self, h: int, w: int, candidates: tuple[Candidate, ...], batch: int = 1) -> Route:
        """Where an h x w image runs and at what size (no pixels touched); UsageError if it cannot run."""
        if self.mode == "crop":
            if self.size is None:
                raise UsageError("preprocess crop needs a size (Preprocess.for_plan gives the plan's first opt point)")
            try:
                return replace(choose_route(self.size.h, self.size.w, candidates, batch), resized=True)
            except UsageError:
                raise UsageError(f"the crop size {self.size} is outside every profile; covered: "
                                 f"{covered_text(candidates)}", hint="choose a --size inside the range") from None
        target = 1.0 if self.size is None else self.size.h / min(h, w)
        return choose_route(h, w, candidates, batch, fit=self.mode == "fit", stride=self.stride, target=target)

    def prepare(self, image, candidates: tuple[Candidate, ...], batch: int = 1) -> ModelInput:
        """A decoded ``PIL.Image`` as the model's input, routed (one call: serve, predict and sweep use it)."""
        from rsz_export.images.preprocess import crop_input, to_input, to_rgb

        image = to_rgb(image)
        original = (image.height, image.width)
        chosen = self.route(*original, candidates, batch)
        if self.mode == "crop":
            return ModelInput(original, chosen, "crop", crop_input(image, chosen.size, self.crop_ratio))
        return ModelInput(original, chosen, resize_word(original, chosen.size), to_input(image, chosen.size))


def resize_word(original: tuple[int, int], size: Resolution) -> str:
    """"none", "shrink" or "upscale": how an image of ``original`` (h, w) became ``size`` with its whole view."""
    if original == (size.h, size.w):
        return "none"
    return "shrink" if size.pixels < original[0] * original[1] else "upscale"


def parse_modes(text: str) -> tuple[str, ...]:
    """``crop,fit`` -> ("crop", "fit"): a comma-separated list of policies, duplicates dropped, order kept."""
    modes = tuple(dict.fromkeys(m.strip() for m in str(text).split(",") if m.strip()))
    unknown = [m for m in modes if m not in PREPROCESS_MODES]
    if unknown or not modes:
        raise UsageError(f"cannot read {text!r}: give one or more of {', '.join(PREPROCESS_MODES)}, e.g. crop,fit")
    return modes
