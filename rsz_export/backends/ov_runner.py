"""Running an OpenVINO engine: both IR files read once and checked against their sha256, the model built from
those bytes, compiled with the engine's recorded settings through the engine folder's model cache, and the
precision it was compiled to checked against the engine's before any call.

One compiled model serves every profile (its dims are bounded by the plan); routing and coverage are the
Runner base class's. ``pinned`` reshapes the model to one static shape before compiling (bench's static twin)
and bypasses the cache, so a twin never writes into the build folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from rsz_export.artifacts.manifest import EngineRecord, Manifest, verified_bytes
from rsz_export.backends import ov_support as ovs
from rsz_export.backends.base import Runner
from rsz_export.errors import EnvironmentProblem, IntegrityError
from rsz_export.interface import INPUT_NAME


def weights_record(engine: EngineRecord):
    """The ``.bin`` file's record among the engine's extra files."""
    for record in engine.extra_files:
        if record.file.endswith(".bin"):
            return record
    raise IntegrityError(f"engine {engine.name} records no OpenVINO weights (.bin) file",
                         hint="rebuild it: rsz-export build --force")


def read_ir(core, engine: EngineRecord, out_dir: Path):
    """The ov.Model from the engine's verified ``.xml`` and ``.bin`` bytes (what is checked is what is read).
    EnvironmentProblem (exit 3) when this OpenVINO cannot read an IR whose files are intact."""
    import numpy as np
    ov = ovs.load_openvino()

    xml = verified_bytes(out_dir, engine.file)
    weights = verified_bytes(out_dir, weights_record(engine))
    try:
        return core.read_model(xml.decode("utf-8"), ov.Tensor(np.frombuffer(weights, dtype=np.uint8)))
    except (RuntimeError, UnicodeDecodeError) as exc:
        first = ovs.openvino_reason(exc)
        built = ovs.short_version(engine.settings.get("openvino_version", "unknown"))
        version = ovs.short_version(ov.__version__)
        raise EnvironmentProblem(
            f"OpenVINO {version} cannot read the IR of engine {engine.name} (written by OpenVINO {built}; its files "
            f"match the manifest): {first}",
            hint=f"install the OpenVINO that built it ({built}) or newer, or rebuild: rsz-export build --force",
        ) from None


class OvRunner(Runner):
    """A Runner over an OpenVINO IR engine. ``load_seconds`` is how long reading and compiling took."""

    def __init__(self, manifest: Manifest, engine: EngineRecord, out_dir: Path, threads: int | None = None,
                 pinned=None, use_cache: bool = True):
        super().__init__(manifest.plan, engine.profiles)
        self.manifest, self.engine, self.out_dir = manifest, engine, Path(out_dir)
        self.threads, self.pinned, self.use_cache = threads, pinned, use_cache and pinned is None
        self.name = f"{ovs.NAME}:{engine.name}"
        self.device = "cpu"
        self.executed_precision: str | None = None
        self.load_seconds: float | None = None
        self._request = None

    def _cache_dir(self) -> str | None:
        if not self.use_cache:
            return None
        return str(self.out_dir / Path(self.engine.file.file).parent / self.engine.settings.get("cache_dir",
                                                                                                 ovs.CACHE_DIR))

    def __enter__(self) -> OvRunner:
        ov = ovs.load_openvino()

        if problem := ovs.precision_problem(self.engine.precision, *ovs.cpu_facts()):
            hint = "run it on a CPU that executes it, or build --precision fp32 here"
            raise EnvironmentProblem(f"engine {self.engine.name}: {problem}", hint=hint)
        started = time.perf_counter()
        core = ov.Core()
        model = read_ir(core, self.engine, self.out_dir)
        if self.pinned is not None:
            model.reshape({INPUT_NAME: ov.PartialShape(list(self.pinned.nchw))})
        config = ovs.compile_config(self.engine.settings, self.threads, self._cache_dir())
        compiled = core.compile_model(model, "CPU", config)
        self.executed_precision = ovs.executed_precision(compiled.get_property("INFERENCE_PRECISION_HINT"))
        expected = ovs.executed_precision(ovs.HINTS[self.engine.precision])
        if self.executed_precision != expected:
            raise EnvironmentProblem(
                f"engine {self.engine.name} asks OpenVINO for {self.engine.precision}, but on this CPU OpenVINO "
                f"compiled it to {self.executed_precision}: refusing to report {self.executed_precision} results "
                f"as {self.engine.precision}",
                hint="run it on a CPU with AMX or AVX512-BF16, or build --precision fp32 here",
            )
        self._request = compiled.create_infer_request()
        self.load_seconds = round(time.perf_counter() - started, 3)
        return self

    def __exit__(self, *exc) -> None:
        self._request = None

    def _run(self, images, profile: int | None):
        self._request.infer({INPUT_NAME: images})
        return self._request.get_output_tensor(0).data.copy()
