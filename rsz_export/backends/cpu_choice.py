"""``--backend auto`` without a GPU: ONNX Runtime or OpenVINO, whichever runs this model faster on this CPU.

Both runtimes run the model the engines would be built from (the export, or for int8 the CPU Q/DQ model) at each
planned profile's opt shape, in alternating rounds (one session runs at a time, so a busy spell of a shared
machine falls on both). OpenVINO is chosen only when it was faster in every round; otherwise, including when
the rounds disagree (the difference is within the machine's noise), ONNX Runtime, the embedded default, is
kept. Both timings, the rounds and the reason are recorded in the engine's settings (``auto_choice``).

Where OpenVINO reports bf16 units and fp32 was asked, one more OpenVINO session in bf16 is timed the same way,
and the build says once what ``--precision bf16`` would give; only when OpenVINO really compiled it to bf16.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from rsz_export.backends import ov_support as ovs
from rsz_export.backends.base import BuildOptions
from rsz_export.interface import INPUT_NAME, Log
from rsz_export.plan.profiles import Plan

ORT, OV = "onnxruntime", ovs.NAME
ROUNDS = 3
CALLS_PER_ROUND = 1


def decide(rounds: dict[str, list[float]]) -> tuple[str, str]:
    """(chosen backend, why) from each backend's per-round totals in ms (paired by index)."""
    ratios = [o / v for o, v in zip(rounds[ORT], rounds[OV])]
    if min(ratios) > 1.0:
        return OV, f"OpenVINO was faster in all {len(ratios)} rounds ({min(ratios):.2f}x..{max(ratios):.2f}x)"
    if max(ratios) < 1.0:
        return ORT, f"ONNX Runtime was faster in all {len(ratios)} rounds"
    return ORT, (f"the rounds disagree (OpenVINO {min(ratios):.2f}x..{max(ratios):.2f}x of ONNX Runtime's "
                 "speed): within noise, ONNX Runtime kept")


def opt_shapes(plan: Plan) -> list[tuple[int, int, int, int]]:
    """The distinct NCHW opt shapes of the plan's profiles."""
    return list(dict.fromkeys(p.opt.nchw for p in plan.profiles))


def _ort_call(model: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, {INPUT_NAME: feed}), "fp32"


def _ov_call(model: Path, plan: Plan, precision: str, threads: int):
    from rsz_export.backends.ov_build import convert

    ov = ovs.load_openvino()

    config = ovs.compile_config(ovs.compile_settings(precision, threads))
    compiled = ov.Core().compile_model(convert(model, plan), "CPU", config)
    request = compiled.create_infer_request()
    return lambda feed: request.infer({INPUT_NAME: feed}), ovs.executed_precision(
        compiled.get_property("INFERENCE_PRECISION_HINT"))


def _round(call, feeds) -> float:
    """ms of the fastest of ``CALLS_PER_ROUND`` calls, summed over the shapes."""
    total = 0.0
    for feed in feeds:
        best = float("inf")
        for _ in range(CALLS_PER_ROUND):
            started = time.perf_counter()
            call(feed)
            best = min(best, (time.perf_counter() - started) * 1000)
        total += best
    return total


def _timed(calls: dict, feeds) -> dict[str, list[float]]:
    for call in calls.values():  # first calls at each shape compile kernels: not timed
        for feed in feeds:
            call(feed)
    rounds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            rounds[name].append(round(_round(call, feeds), 3))
    return rounds


def _source(onnx_path: Path, options: BuildOptions, tmp: Path) -> Path:
    if options.precision != "int8":
        return Path(onnx_path)
    from rsz_export.model.calibration import read_placement, read_ranges
    from rsz_export.model.quantization import cpu_qdq, qdq_model

    float_layers = read_placement(options.calibration)[0]
    return qdq_model(onnx_path, read_ranges(options.calibration), cpu_qdq(), tmp / "probe.int8.onnx", float_layers)


def measure_choice(onnx_path: Path, plan: Plan, options: BuildOptions, threads: int, log: Log) -> dict:
    """Time both runtimes on this build's model at the plan's opt shapes; the record kept in the manifest."""
    import numpy as np

    rng = np.random.default_rng(0)
    shapes = opt_shapes(plan)
    feeds = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    with tempfile.TemporaryDirectory(prefix="rsz-auto-") as tmp:
        model = _source(onnx_path, options, Path(tmp))
        calls = {ORT: _ort_call(model, threads)[0], OV: _ov_call(model, plan, options.precision, threads)[0]}
        bf16_units = "BF16" in ovs.cpu_facts()[0]
        bf16 = _ov_call(model, plan, "bf16", threads) if bf16_units and options.precision == "fp32" else None
        if bf16 is not None and bf16[1] == "bf16":
            calls["openvino-bf16"] = bf16[0]
        rounds = _timed(calls, feeds)
    chosen, why = decide(rounds)
    record = {"chosen": chosen, "why": why, "shapes": ["x".join(map(str, s)) for s in shapes],
              "rounds_ms": rounds, "median_ms": {k: statistics.median(v) for k, v in rounds.items()},
              "precision": options.precision}
    log(auto_line(record))
    if "openvino-bf16" in rounds:
        log(bf16_line(record))
    return record


def auto_line(record: dict) -> str:
    """What the build prints about its choice."""
    medians = record["median_ms"]
    return (f"auto ({record['precision']}, opt shapes {', '.join(record['shapes'])}): ONNX Runtime "
            f"{medians[ORT]:.1f} ms, OpenVINO {medians[OV]:.1f} ms per round: {record['chosen']} ({record['why']})")


def bf16_line(record: dict) -> str:
    """The one line saying what bf16 would give on a CPU with bf16 units."""
    medians = record["median_ms"]
    fastest = min(medians[ORT], medians[OV])
    return (f"this CPU has bf16 units: OpenVINO in bf16 took {medians['openvino-bf16']:.1f} ms per round "
            f"({fastest / medians['openvino-bf16']:.2f}x the chosen fp32); --precision bf16 builds it "
            "(validate checks its accuracy)")
