"""Serving images of any size from built engines: preprocess, route to an engine and profile, infer, label.

What ``Session.predict`` does to an image: decode it (``images.loading.load_rgb``: EXIF rotation applied, RGB),
turn it into an input by the session's preprocessing policy (``serve.preprocess_policy.Preprocess``: ``native`` by
default, which refuses an image no profile covers; ``fit`` resizes it in, ``crop`` takes the evaluation crop),
run it, and report the top classes. ``prepare`` and ``classify`` split those steps so that images routed to the
same engine, profile and size can share one batch (up to the profile's max batch).

Thread safety: a Session holds ``workers`` slots; a call takes a free slot for its whole run and gives it back,
so at most ``workers`` calls run at once (the extra callers wait). Each slot has its own runner per engine (its
own TensorRT execution context), except where the runner may be called from several threads at once
(``Runner.thread_safe``: ONNX Runtime on the CPU), where the slots share one, so the engine is loaded once
however many workers serve it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from rsz_export.artifacts.files import readers_lock
from rsz_export.artifacts.manifest import load_manifest
from rsz_export.backends import REFERENCE, is_reference, load_backend, require_backend
from rsz_export.backends.base import RunnerOptions
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError, check_int
from rsz_export.interface import MAX_NUM_CLASSES
from rsz_export.parity import top_k
from rsz_export.plan.routing import Candidate, Route
from rsz_export.serve.preprocess_policy import ModelInput, Preprocess
from rsz_export.shapes import Resolution

MAX_WORKERS = 64


@dataclass(frozen=True)
class Label:
    """One class of a prediction: its index, name and softmax probability."""

    index: int
    name: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: top-k labels, where it ran and how it got there (the policy and what it did to
    the pixels: none, shrink, upscale or crop), how many images shared its inference call, and the time taken
    (``latency_ms``: that call; ``total_ms``: from the start of decoding to the answer)."""

    source: str
    original: tuple[int, int]
    input: Resolution
    engine: str
    backend: str
    profile: int
    top: tuple[Label, ...]
    latency_ms: float
    total_ms: float
    preprocess: str = "native"
    resize: str = "none"
    batch: int = 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["original"], data["input"] = f"{self.original[0]}x{self.original[1]}", str(self.input)
        data["top"] = [asdict(label) for label in self.top]
        return data


def top_labels(logits, k: int, names: Sequence[str]) -> tuple[Label, ...]:
    """The k most probable classes of one logit vector, with softmax probabilities."""
    import numpy as np

    values = np.asarray(logits, dtype=np.float64).reshape(-1)
    probs = np.exp(values - values.max())
    probs /= probs.sum()
    return tuple(Label(int(i), names[int(i)], float(probs[i])) for i in top_k(values, k)[0])


class Pending(NamedTuple):
    """An image made ready and waiting for its inference call: its name, its input, when its decoding began."""

    source: str
    input: ModelInput
    started: float


def check_options(workers: int, top: int | None = None) -> None:
    check_int(workers, "workers", 1, MAX_WORKERS)
    if top is not None:
        check_int(top, "top-k", 1, MAX_NUM_CLASSES)


def select_engines(manifest, backend: str | None) -> tuple:
    """The engine records to serve from (``None`` stands for the PyTorch reference); errors say what exists."""
    have = sorted({e.backend for e in manifest.engines})
    if is_reference(backend):  # no engine file: every plan profile served by one model
        require_backend(REFERENCE)
        return (None,)
    if not manifest.engines:
        raise IntegrityError("the manifest lists no engines", hint="rebuild them: rsz-export build --force")
    if backend is not None:
        chosen = tuple(e for e in manifest.engines if e.backend == backend)
        if not chosen:
            raise UsageError(f"the manifest has no {backend} engines; it has: {', '.join(have)} (or use {REFERENCE})")
        require_backend(backend)
        return chosen
    usable = tuple(e for e in manifest.engines if load_backend(e.backend).unavailable_reason() is None)
    if not usable:
        raise EnvironmentProblem(f"none of the manifest's backends ({', '.join(have)}) can run on this machine",
                                 hint=f"serve with the PyTorch reference instead: backend {REFERENCE!r}")
    return usable


def check_engine_files(out_dir: Path, engines: Sequence) -> None:
    """IntegrityError listing every engine file that is missing (hashes are checked when a runner opens)."""
    missing = [str(out_dir / f.file) for e in engines if e is not None for f in (e.file, *e.extra_files)
               if not (out_dir / f.file).is_file()]
    if missing:
        raise IntegrityError(f"engine file(s) listed in the manifest are missing: {', '.join(missing)}",
                             hint=f"rebuild them: rsz-export build {out_dir} --force")


def require_classes(manifest, command: str) -> None:
    """UsageError (exit 2) when ``command`` (predict, sweep) is asked of a build whose model has no classes."""
    if not manifest.has_classes:
        raise UsageError(
            f"{command} ranks classes, and this build has none: its model gives the feature maps of a backbone "
            f"(--outputs {manifest.outputs}: {', '.join(manifest.output_names)}), not class logits",
            hint="feed the maps to your detector's heads (README 'As a backbone'), check them with rsz-export "
            "validate, time them with rsz-export bench; predict and sweep need a build with --outputs logits",
        )


class Session:
    """Serves images from the engines in ``out_dir`` (see the module docstring). Use as a context manager."""

    def __init__(self, out_dir: str | Path, backend: str | None = None, preprocess: Preprocess | str = "native",
                 workers: int = 1, threads: int | None = None):
        from rsz_export.model.labels import build_names

        check_options(workers)
        policy = Preprocess(preprocess) if isinstance(preprocess, str) else preprocess
        self.out_dir, self.threads = Path(out_dir), threads
        self._lock = readers_lock(self.out_dir)  # a concurrent build keeps our files until we exit
        self._lock.__enter__()
        try:
            self._load(backend, policy)
            self.names = build_names(self.manifest, self.out_dir)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        self._slots: queue.Queue = queue.Queue()
        for _ in range(workers):
            self._slots.put({})
        self.workers = workers
        self._shared: dict = {}
        self._shared_lock = threading.Lock()

    def _load(self, backend: str | None, policy: Preprocess) -> None:
        self.manifest = load_manifest(self.out_dir)
        self.engines = select_engines(self.manifest, backend)
        check_engine_files(self.out_dir, self.engines)
        plan = self.manifest.plan
        self.candidates = tuple(
            Candidate(i, p, plan.profiles[p])
            for i, e in enumerate(self.engines)
            for p in (range(len(plan.profiles)) if e is None else e.profiles)
        )
        self.batch = plan.batch.min
        self.preprocess = policy.for_plan(plan)
        if self.preprocess.mode == "crop":  # one size for every image: refuse it now rather than per image
            self.route(self.preprocess.size.h, self.preprocess.size.w)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._lock.__exit__(None, None, None)

    def close(self) -> None:
        """Free every runner of every slot (waits for callers still running)."""
        closed = set()
        for _ in range(self.workers):
            slot = self._slots.get()
            for runner in slot.values():
                if id(runner) not in closed:  # a shared runner is closed once
                    closed.add(id(runner))
                    runner.__exit__(None, None, None)
            slot.clear()
        self._shared.clear()
        for _ in range(self.workers):
            self._slots.put({})

    def engine_name(self, index: int) -> tuple[str, str]:
        engine = self.engines[index]
        return (REFERENCE, REFERENCE) if engine is None else (engine.name, engine.backend)

    def route(self, h: int, w: int) -> Route:
        """Where an h x w image would run under the session's policy (no inference)."""
        return self.preprocess.route(h, w, self.candidates, self.batch)

    def max_batch(self, chosen: Route) -> int:
        """How many images routed like ``chosen`` one inference call may take (the profile's max batch)."""
        return next(c.shape.max.batch for c in self.candidates if (c.engine, c.profile) == (chosen.engine,
                                                                                           chosen.profile))

    def open_all(self) -> None:
        """Open every engine's runner in every worker slot now (a server does this before it accepts requests:
        each file's hash is checked and no request pays for opening a runner)."""
        slots = [self._slots.get() for _ in range(self.workers)]
        try:
            for slot in slots:
                for index in range(len(self.engines)):
                    if index not in slot:
                        slot[index] = self._open(index)
        finally:
            for slot in slots:
                self._slots.put(slot)

    def _open(self, index: int):
        """A runner for engine ``index``: the one already open when it may serve several threads, else a new one."""
        with self._shared_lock:
            if index in self._shared:
                return self._shared[index]
            engine = self.engines[index]
            backend = load_backend(REFERENCE if engine is None else engine.backend)
            threads = self.threads if self.threads and engine is not None else None
            runner = backend.open_runner(self.manifest, engine, self.out_dir, RunnerOptions(threads=threads))
            runner = runner.__enter__()
            if runner.thread_safe:
                self._shared[index] = runner
            return runner

    def run(self, batch_array, chosen: Route, every_output: bool = False):
        """Run a preprocessed float32 NCHW array on the routed engine and profile: (logits, latency ms); with
        ``every_output``, (the list of every output: logits, or a backbone's feature maps, latency ms)."""
        slot = self._slots.get()
        try:
            if chosen.engine not in slot:
                slot[chosen.engine] = self._open(chosen.engine)
            start = time.perf_counter()
            runner = slot[chosen.engine]
            if every_output:
                outputs = runner.infer_all(batch_array, profile=chosen.profile)
            else:
                outputs = runner.infer(batch_array, profile=chosen.profile)
            return outputs, (time.perf_counter() - start) * 1000
        finally:
            self._slots.put(slot)

    def infer(self, inputs: Sequence[ModelInput], every_output: bool = False):
        """Run inputs sharing one route as one batch (repeating the last up to the profiles' min batch):
        (logits of each input, latency ms of the call); with ``every_output``, every output's rows of the inputs
        (a list, in the model's output order)."""
        import numpy as np

        chosen = inputs[0].route
        if any(i.route != chosen for i in inputs) or len(inputs) > self.max_batch(chosen):
            raise ValueError(f"a batch must share one route and fit its profile's max batch: {chosen}")
        arrays = [i.array for i in inputs]
        arrays += arrays[-1:] * (self.batch - len(arrays))
        outputs, latency_ms = self.run(np.concatenate(arrays), chosen, every_output)
        if every_output:
            return [o[: len(inputs)] for o in outputs], latency_ms
        return outputs[: len(inputs)], latency_ms

    def prepare(self, image) -> ModelInput:
        """A decoded image (``PIL.Image``) as an input under the session's policy; UsageError if it cannot run."""
        return self.preprocess.prepare(image, self.candidates, self.batch)

    def classify(self, pending: Sequence[Pending], top: int = 5) -> list[Prediction]:
        """Predictions for images that share one route, run as one batch."""
        check_options(self.workers, top)
        logits, latency_ms = self.infer([p.input for p in pending])
        name, backend = self.engine_name(pending[0].input.route.engine)
        done, shown = time.perf_counter(), min(top, len(self.names))  # every class when the model has fewer
        return [
            Prediction(
                source=p.source, original=p.input.original, input=p.input.route.size, engine=name, backend=backend,
                profile=p.input.route.profile, top=top_labels(row, shown, self.names), latency_ms=latency_ms,
                total_ms=(done - p.started) * 1000, preprocess=self.preprocess.mode, resize=p.input.resize,
                batch=len(pending),
            )
            for p, row in zip(pending, logits)
        ]

    def predict(self, image, top: int = 5, source: str | None = None) -> Prediction:
        """Classify one image: a file path or a ``PIL.Image``."""
        from rsz_export.images.loading import load_rgb

        check_options(self.workers, top)
        start = time.perf_counter()
        if isinstance(image, (str, Path)):
            source, image = source or str(image), load_rgb(image)
        return self.classify([Pending(source or "<image>", self.prepare(image), start)], top)[0]
