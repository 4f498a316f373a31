"""The OpenVINO backend, on the CPU: one IR with bounded dynamic dims serves every planned profile, in fp32, in
bf16 where the CPU has bf16 units (AMX, AVX512-BF16), in fp16 where it has AMX-FP16, and in int8 from the same
checked CPU Q/DQ model ONNX Runtime's int8 engine runs.

Building is in ``ov_build``, running in ``ov_runner``, the pure facts (precision hints, capabilities, bounds)
in ``ov_support``. A precision the CPU does not execute is refused when building and when running: OpenVINO
itself would compile it silently in f32 (see ``ov_support``). Only ``ov_*`` modules import ``openvino``, and only
inside functions.
"""

from __future__ import annotations

from rsz_export.artifacts.manifest import EngineRecord, Manifest
from rsz_export.backends import ov_support as ovs
from rsz_export.backends.base import Backend, BuildOptions, RunnerOptions, TritonModel
from rsz_export.backends.ov_runner import OvRunner
from rsz_export.errors import UsageError

NAME = ovs.NAME
SUPPORTED_PRECISIONS = ovs.SUPPORTED_PRECISIONS


def unavailable_reason() -> str | None:
    """None when openvino imports, else the install line."""
    try:
        ovs.load_openvino()
    except ImportError:
        return f"OpenVINO is not installed: {ovs.INSTALL}"
    return None


def check_precision(options: BuildOptions) -> None:
    """CPU only; the precision must be one this CPU executes (EnvironmentProblem, exit 3, otherwise)."""
    if options.device != "cpu":
        raise UsageError(f"backend openvino runs on the CPU here, not on {options.device}",
                         hint="use --device cpu, or --backend tensorrt/onnxruntime for a GPU")
    if unavailable_reason() is None:
        ovs.refuse_precision(options.precision, *ovs.cpu_facts())


def matmul_call(n: int, threads: int):
    """A call running one f32 [n,n]x[n,n] MatMul compiled by OpenVINO on the CPU with ``threads`` threads: the
    peak bench judges OpenVINO engines' GFLOP/s against."""
    import numpy as np
    ov = ovs.load_openvino()
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], np.float32, name="a")
    product = ops.matmul(a, ops.constant(rng.standard_normal((n, n), dtype=np.float32)), False, False)
    model = ov.Model([product], [a], "matmul_peak")
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    feed = {"a": rng.standard_normal((n, n), dtype=np.float32)}
    return lambda: request.infer(feed)


class OpenVINO(Backend):
    """OpenVINO on the CPU: fp32, int8 (the CPU Q/DQ model) and, where the CPU executes them, bf16 and fp16."""

    name = NAME
    precisions = SUPPORTED_PRECISIONS
    extra = "openvino"
    shares_graph = True
    gives_every_output = False  # its runner returns the first output only: not for a backbone's feature maps

    def unavailable_reason(self) -> str | None:
        return unavailable_reason()

    def check_compatible(self, manifest: Manifest, engine: EngineRecord | None) -> str | None:
        """None when this CPU executes the engine's precision; else why not (the IR itself is portable)."""
        if reason := unavailable_reason():
            return reason
        if engine is None:
            return None
        from rsz_export.model.quantization import cpu_int8_problem

        return ovs.precision_problem(engine.precision, *ovs.cpu_facts()) or cpu_int8_problem(engine)

    def check_options(self, options: BuildOptions) -> None:
        super().check_options(options)
        check_precision(options)

    def open_runner(self, manifest, engine, out_dir, options: RunnerOptions | None = None) -> OvRunner:
        """Uses ``threads`` (INFERENCE_NUM_THREADS, else the engine's) and ``pinned`` (the model reshaped to that
        static shape before compiling, without the model cache)."""
        options = options or RunnerOptions()
        engine = engine if engine is not None else self.engines_of(manifest)[0]
        from rsz_export.model.quantization import refuse_int8_without_vnni

        refuse_int8_without_vnni(engine)
        return OvRunner(manifest, engine, out_dir, threads=options.threads, pinned=options.pinned)

    def build_engines(self, onnx_path, plan, options, out_dir, log) -> list[EngineRecord]:
        from rsz_export.backends.ov_build import build_engines as build

        check_precision(options)
        capabilities, cpu = ovs.cpu_facts()
        return build(onnx_path, plan, options, out_dir, log, capabilities, cpu)

    def recorded_options(self, engine: EngineRecord) -> BuildOptions:
        return BuildOptions(precision=engine.precision, threads=engine.settings.get("INFERENCE_NUM_THREADS"))

    def matmul_peak(self, n: int, threads: int, device: str):
        return matmul_call(n, threads)

    def triton_model(self, manifest: Manifest, engine: EngineRecord) -> TritonModel:
        """Triton's openvino backend: the IR's two files, its thread, stream and bf16 parameters; the batch bounded
        by the plan. It has no parameter asking for f16, so an fp16 engine is refused."""
        from rsz_export.backends.ov_runner import weights_record

        if problem := ovs.triton_problem(engine.precision):
            raise UsageError(f"engine {engine.name}: {problem}", hint="serve it with rsz-export serve instead")
        xml, weights = ovs.TRITON_FILES
        return TritonModel("", NAME, "KIND_CPU", engine.file, xml, True,
                           parameters=ovs.triton_parameters(engine.settings, engine.precision),
                           extra_files=((weights_record(engine), weights),))
