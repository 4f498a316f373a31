"""Serve images of any size from built engines: preprocess, route to an engine and profile, infer, label.

Preprocessing policy (what ``Session.predict`` does to an image):
  1. decode with ``images.load_rgb`` (EXIF rotation applied, RGB);
  2. keep the image's own size when a profile covers it. ResNet-50 accepts any side >= 32 and the planned
     profiles accept every integer size in their band, so sizes that are not multiples of the stride 32 are
     run as they are (``stride="exact"``, the default: no resampling, no padding; the last feature map is
     ceil(side / 32) wide either way). ``stride="snap"`` rounds each side to the nearest multiple of 32
     first (a resize changing the aspect ratio by under 32 pixels), for backends that are fastest there;
  3. an image no profile covers follows ``oversize``: ``"error"`` (the default) refuses it naming the covered
     range; ``"shrink"`` resizes it, aspect ratio kept, by the scale closest to 1 that fits a profile: down
     into the largest profile for big images, up to the smallest side for thumbnails;
  4. resize (bilinear, antialiased, as torchvision's weights were evaluated) only when step 2 or 3 asked
     for another size, then normalise with ImageNet's mean and std (``images.to_input``). No crop.

Routing: every (engine, plan profile) pair the chosen engines carry is a candidate; the input goes to the
covering candidate with the smallest max area, ties to the earlier engine and lower profile index, which is
``planning.route`` applied across engines.

Thread safety: a Session holds ``workers`` slots, each with its own runner per engine (its own ONNX Runtime
session or TensorRT execution context). A call takes a free slot for its whole run and gives it back, so no
runner is ever used by two threads at once; with more concurrent callers than workers, the extra callers wait.
"""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.planning import route
from rsz_export.shapes import STRIDE, Profile, Resolution

OVERSIZE_POLICIES = ("error", "shrink")
STRIDE_POLICIES = ("exact", "snap")
TORCH = "torch"
"""Backend name for the PyTorch reference: no engine file, every plan profile served by one model."""


@dataclass(frozen=True)
class Candidate:
    """One place an input can run: engine ``engine`` (index into the session's engines), plan profile ``profile``."""

    engine: int
    profile: int
    shape: Profile


@dataclass(frozen=True)
class Route:
    """Where an image goes and at what size."""

    engine: int
    profile: int
    size: Resolution
    resized: bool


@dataclass(frozen=True)
class Label:
    index: int
    name: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: top-k labels, where it ran, and how long it took."""

    source: str
    original: tuple[int, int]
    input: Resolution
    engine: str
    backend: str
    profile: int
    top: tuple[Label, ...]
    latency_ms: float
    total_ms: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data["original"], data["input"] = f"{self.original[0]}x{self.original[1]}", str(self.input)
        data["top"] = [asdict(label) for label in self.top]
        return data


def _snap(side: int, lo: int = STRIDE, hi: int = 1 << 30) -> int:
    """The multiple of 32 nearest ``side`` inside lo..hi, or ``side`` clamped there if none lies inside."""
    inside = [m for m in (math.floor(side / STRIDE) * STRIDE, math.ceil(side / STRIDE) * STRIDE) if lo <= m <= hi]
    return min(inside, key=lambda m: (abs(m - side), m)) if inside else min(max(side, lo), hi)


def covered_text(candidates: Sequence[Candidate]) -> str:
    shapes = sorted({c.shape.describe() for c in candidates})
    return "; ".join(shapes)


def fit_size(h: int, w: int, candidates: Sequence[Candidate], batch: int, stride: str) -> Resolution | None:
    """The size, aspect ratio kept, that fits a profile with the scale closest to 1; None if none can."""
    best = None
    for c in candidates:
        p = c.shape
        if not p.min.batch <= batch <= p.max.batch:
            continue
        lo_scale = max(p.min.h / h, p.min.w / w)
        hi_scale = min(p.max.h / h, p.max.w / w)
        if lo_scale > hi_scale:
            continue
        scale = min(max(1.0, lo_scale), hi_scale)
        key = (abs(math.log(scale)), p.max_pixels)
        if best is None or key < best[0]:
            best = (key, scale, p)
    if best is None:
        return None
    _, scale, p = best
    fh, fw = min(max(round(h * scale), p.min.h), p.max.h), min(max(round(w * scale), p.min.w), p.max.w)
    if stride == "snap":
        fh, fw = _snap(fh, p.min.h, p.max.h), _snap(fw, p.min.w, p.max.w)
    return Resolution(fh, fw)


def choose_route(h: int, w: int, candidates: Sequence[Candidate], batch: int = 1, oversize: str = "error",
                 stride: str = "exact") -> Route:
    """Route an h x w image (see the module docstring); UsageError naming the covered range if it cannot run."""
    want = (h, w) if stride == "exact" else (_snap(h), _snap(w))
    index = route([c.shape for c in candidates], batch, *want)
    if index is None and oversize == "shrink":
        fitted = fit_size(h, w, candidates, batch, stride)
        if fitted is None:
            raise UsageError(
                f"a {h}x{w} image cannot be resized into any profile with its aspect ratio kept "
                f"(covered: {covered_text(candidates)})",
                hint="crop it first, or build a range whose min and max allow this aspect ratio",
            )
        want = (fitted.h, fitted.w)
        index = route([c.shape for c in candidates], batch, *want)
    if index is None:
        raise UsageError(
            f"a {h}x{w} image (batch {batch}) is outside every profile; covered: {covered_text(candidates)}",
            hint="use oversize='shrink' (--oversize shrink) to resize it into the range, or build a wider range",
        )
    chosen = candidates[index]
    return Route(chosen.engine, chosen.profile, Resolution(*want), want != (h, w))


def top_k(logits, k: int, names: Sequence[str]) -> tuple[Label, ...]:
    """The k most probable classes of one logit vector, with softmax probabilities."""
    import numpy as np

    values = np.asarray(logits, dtype=np.float64).reshape(-1)
    probs = np.exp(values - values.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")[:k]
    return tuple(Label(int(i), names[int(i)], float(probs[i])) for i in order)


def check_options(oversize: str, stride: str, workers: int, top: int | None = None) -> None:
    if oversize not in OVERSIZE_POLICIES:
        raise UsageError(f"oversize {oversize!r} is not one of {', '.join(OVERSIZE_POLICIES)}")
    if stride not in STRIDE_POLICIES:
        raise UsageError(f"stride {stride!r} is not one of {', '.join(STRIDE_POLICIES)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise UsageError(f"workers must be a whole number in 1..64, got {workers!r}")
    if top is not None and not 1 <= top <= 1000:
        raise UsageError(f"top-k must be in 1..1000, got {top}")


def select_engines(manifest, backend: str | None) -> tuple:
    """The engine records to serve from (``None`` stands for the PyTorch reference); errors say what exists."""
    from rsz_export.backends import load_backend, require_backend

    have = sorted({e.backend for e in manifest.engines})
    if backend == TORCH:
        require_backend(TORCH)
        return (None,)
    if not manifest.engines:
        raise IntegrityError("the manifest lists no engines", hint="rebuild them: rsz-export build --force")
    if backend is not None:
        chosen = tuple(e for e in manifest.engines if e.backend == backend)
        if not chosen:
            raise UsageError(f"the manifest has no {backend} engines; it has: {', '.join(have)} (or use {TORCH})")
        require_backend(backend)
        return chosen
    usable = tuple(e for e in manifest.engines if load_backend(e.backend).unavailable_reason() is None)
    if not usable:
        raise EnvironmentProblem(f"none of the manifest's backends ({', '.join(have)}) can run on this machine",
                                 hint=f"serve with the PyTorch reference instead: backend {TORCH!r}")
    return usable


def check_engine_files(out_dir: Path, engines: Sequence) -> None:
    """IntegrityError listing every engine file that is missing (hashes are checked when a runner opens)."""
    missing = [str(out_dir / f.file) for e in engines if e is not None for f in (e.file, *e.extra_files)
               if not (out_dir / f.file).is_file()]
    if missing:
        raise IntegrityError(f"engine file(s) listed in the manifest are missing: {', '.join(missing)}",
                             hint=f"rebuild them: rsz-export build --out {out_dir} --force")


class Session:
    """Serves images from the engines in ``out_dir`` (see the module docstring). Use as a context manager."""

    def __init__(self, out_dir: str | Path, backend: str | None = None, oversize: str = "error",
                 workers: int = 1, stride: str = "exact", threads: int | None = None):
        from rsz_export.fileio import readers_lock
        from rsz_export.imagenet import labels
        from rsz_export.manifest import load_manifest

        check_options(oversize, stride, workers)
        self.out_dir, self.oversize, self.stride, self.threads = Path(out_dir), oversize, stride, threads
        self._lock = readers_lock(self.out_dir)  # a concurrent build keeps our files until we exit
        self._lock.__enter__()
        try:
            self.manifest = load_manifest(self.out_dir)
            self.engines = select_engines(self.manifest, backend)
            check_engine_files(self.out_dir, self.engines)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        plan = self.manifest.plan
        self.candidates = tuple(
            Candidate(i, p, plan.profiles[p])
            for i, e in enumerate(self.engines)
            for p in (range(len(plan.profiles)) if e is None else e.profiles)
        )
        self.batch = plan.batch.min
        self.names = labels()
        self._slots: queue.Queue = queue.Queue()
        for _ in range(workers):
            self._slots.put({})
        self.workers = workers

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._lock.__exit__(None, None, None)

    def close(self) -> None:
        """Free every runner of every slot (waits for callers still running)."""
        for _ in range(self.workers):
            slot = self._slots.get()
            for runner in slot.values():
                runner.__exit__(None, None, None)
            slot.clear()
        for _ in range(self.workers):
            self._slots.put({})

    def engine_name(self, index: int) -> tuple[str, str]:
        engine = self.engines[index]
        return (TORCH, TORCH) if engine is None else (engine.name, engine.backend)

    def route(self, h: int, w: int) -> Route:
        """Where an h x w image would run (no inference)."""
        return choose_route(h, w, self.candidates, self.batch, self.oversize, self.stride)

    def _open(self, index: int):
        from rsz_export.backends import load_backend

        engine = self.engines[index]
        module = load_backend(TORCH if engine is None else engine.backend)
        kwargs = {"threads": self.threads} if self.threads and engine is not None else {}
        runner = module.open_runner(self.manifest, engine, self.out_dir, **kwargs)
        return runner.__enter__()

    def run(self, batch_array, chosen: Route):
        """Run a preprocessed float32 NCHW array on the routed engine and profile: (logits, latency ms)."""
        slot = self._slots.get()
        try:
            if chosen.engine not in slot:
                slot[chosen.engine] = self._open(chosen.engine)
            start = time.perf_counter()
            logits = slot[chosen.engine].infer(batch_array, profile=chosen.profile)
            return logits, (time.perf_counter() - start) * 1000
        finally:
            self._slots.put(slot)

    def predict(self, image, top: int = 5, source: str | None = None) -> Prediction:
        """Classify one image: a file path or an RGB ``PIL.Image``."""
        import numpy as np

        from rsz_export.images import load_rgb, normalise, to_input

        check_options(self.oversize, self.stride, self.workers, top)
        start = time.perf_counter()
        if isinstance(image, (str, Path)):
            source, image = source or str(image), load_rgb(image)
        chosen = self.route(image.height, image.width)
        array = to_input(image, chosen.size) if chosen.resized else normalise(np.asarray(image.convert("RGB")))
        if self.batch > 1:  # the profiles start above batch 1: repeat the image, keep the first answer
            array = np.repeat(array, self.batch, axis=0)
        logits, latency_ms = self.run(array, chosen)
        name, backend = self.engine_name(chosen.engine)
        return Prediction(
            source=source or "<image>", original=(image.height, image.width), input=chosen.size,
            engine=name, backend=backend, profile=chosen.profile, top=top_k(logits[0], top, self.names),
            latency_ms=latency_ms, total_ms=(time.perf_counter() - start) * 1000,
        )
