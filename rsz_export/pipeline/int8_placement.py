"""What the int8 build measures on its held-out images once the ranges are calibrated: the coverage report, and
(with an accuracy target) which layers stay in float.

* Coverage: how many calibration images each profile got, and the share of activations the calibrated ranges
  clip on the held-out images at the plan's smallest and largest square (overall and the worst tensors).
* Placement (``model.sensitivity``): each layer's sensitivity on the held-out images at the smallest size, then
  the fewest most sensitive layers kept in float so that the worst cosine to fp32 on the held-out images meets
  the target at every profile's check sizes (the smallest and largest square routing sends to it,
  ``model.quantization.profile_check_sizes``), each candidate checked with the real Q/DQ model the build's
  backend makes its engines from (``Backend.int8_model``): the CPU model as ONNX Runtime runs it
  here (8-bit weights on a CPU with VNNI, 7-bit without), or for TensorRT its own model computed exactly. Both
  Q/DQ models leave out the same layers (``model.quantization``), and each engine's model is checked again on the
  held-out images against the same target when it is built (``model.quantization.checked_qdq``).
* Precision per profile: when no placement that leaves most of the work in int8 meets the target on every
  profile, the profiles the best one tried meets it on are built in int8 and the others in fp32
  (``precision_groups``; the manifest's engines and ``bench`` say which precision serves which profile). When it
  meets it on none, the build stops (CheckFailed, exit 1) with the table of what was tried.
"""

from __future__ import annotations

import time

import numpy as np

from rsz_export.errors import CheckFailed
from rsz_export.interface import Log
from rsz_export.model.calibration_set import CalibrationSet
from rsz_export.plan.profiles import Plan, route

SENSITIVITY_IMAGES = 2
"""Held-out images the per-layer sensitivity runs on (at the smallest size): one pass per layer each."""
WORST_TENSORS = 3
LATENCY_RUNS = 5
"""Timed calls per trial placement, at the smallest check size, one image."""


def coverage_report(onnx_path, ranges, calib: CalibrationSet, plan: Plan, threads: int | None, log: Log) -> dict:
    """Images per profile and the share of activations clipped on the held-out images (module docstring)."""
    from rsz_export.model.calibration import clipped_shares
    from rsz_export.model.quantization import check_sizes

    per_profile = [0] * len(plan.profiles)
    for item in calib.items:
        index = route(plan.profiles, plan.profiles[0].min.batch, item.size.h, item.size.w)
        if index is not None:
            per_profile[index] += 1
    report = {"images_per_profile": per_profile, "holdout": None, "clipped_share": None, "worst_tensors": []}
    if calib.holdout is not None:
        sizes = check_sizes(plan)
        feeds = (calib.holdout.feeds_at(size)[i:i + 1] for size in sizes for i in range(len(calib.holdout.measured())))
        shares, overall = clipped_shares(onnx_path, ranges, feeds, threads)
        worst = sorted(shares.items(), key=lambda item: -item[1])[:WORST_TENSORS]
        report.update(holdout=calib.holdout.to_dict(), clipped_share=round(overall, 8), sizes=[str(s) for s in sizes],
                      worst_tensors=[{"tensor": n, "clipped_share": round(s, 6)} for n, s in worst])
    log(coverage_line(report))
    return report


def coverage_line(report: dict) -> str:
    per = ", ".join(f"profile {i}: {n}" for i, n in enumerate(report["images_per_profile"]))
    line = f"int8 coverage: calibration images per profile {per}"
    if report.get("holdout"):
        held = report["holdout"]
        line += (f"; {held['measured']} held-out image(s) ({held['source']}) at {', '.join(report['sizes'])}: "
                 f"{report['clipped_share']:.4%} of activations clipped")
        if report["worst_tensors"]:
            worst = report["worst_tensors"][0]
            line += f" (most: {worst['tensor']} {worst['clipped_share']:.3%})"
    return line


def fallback_placement(onnx_path, ranges, calib: CalibrationSet, plan: Plan, threads: int | None, log: Log,
                       settings=None) -> dict:
    """The layers kept in float to meet ``calib.target`` on the held-out images, each trial judged on the Q/DQ
    model of ``settings`` (default: the CPU model for this CPU); CheckFailed when none meets it anywhere."""
    import tempfile

    import onnx

    from rsz_export.interface import INPUT_NAME
    from rsz_export.model import sensitivity as model_sensitivity
    from rsz_export.model.quantization import _session, cpu_qdq, profile_check_sizes, qdq_model
    from rsz_export.model.sensitivity import SwitchableRunner, choose_fallback, cosines, layers_of, measure_sensitivity

    started, settings = time.perf_counter(), settings or cpu_qdq()
    per_profile = profile_check_sizes(plan)
    sizes = tuple(sorted(dict.fromkeys(s for group in per_profile for s in group), key=lambda r: (r.h * r.w, r.h)))
    feeds = {size: calib.holdout.feeds_at(size) for size in sizes}
    smallest = sizes[0]
    runner = SwitchableRunner(onnx_path, ranges, threads)
    sensitivity = measure_sensitivity(runner, feeds[smallest][:SENSITIVITY_IMAGES])
    del runner
    log(f"int8 sensitivity of {len(sensitivity)} layers measured in {time.perf_counter() - started:.1f} s")
    fp32 = _session(onnx_path, threads)
    reference = {size: fp32.run(None, {INPUT_NAME: x}) for size, x in feeds.items()}  # every output
    layers = layers_of(onnx.load(str(onnx_path)), (1, 3, smallest.h, smallest.w))

    latency: dict[int, float] = {}
    timed = settings.check_level == "ORT_ENABLE_ALL"  # run as its engine runs here (not TensorRT's exact check)
    with tempfile.TemporaryDirectory(prefix="rsz-int8-trial-") as work:
        def evaluate(float_layers):  # the CPU Q/DQ model as ONNX Runtime runs it, leaving those layers out
            trial = qdq_model(onnx_path, ranges, settings, f"{work}/trial.onnx", float_layers)
            session, worst, median = _session(trial, threads, settings.check_level), {}, {}
            for size, x in feeds.items():
                c = cosines(reference[size], session.run(None, {INPUT_NAME: x}))
                worst[str(size)], median[str(size)] = round(float(c.min()), 6), round(float(np.median(c)), 6)
            if timed:
                latency[len(float_layers)] = _latency_ms(session, feeds[smallest][:1])
            return worst, median

        placement = choose_fallback(layers, sensitivity, evaluate, calib.target, model_sensitivity.MAX_FLOAT_SHARE,
                                    log, profiles=[[str(s) for s in group] for group in per_profile])
    result = {**placement.to_dict(), "seconds": round(time.perf_counter() - started, 2),
              "sensitivity_images": min(SENSITIVITY_IMAGES, len(feeds[smallest])), "sizes": [str(s) for s in sizes],
              "checked_with": settings.name, "latency_size": str(smallest) if timed else None}
    for row in result["trials"]:
        row["latency_ms"] = latency.get(row["float_layers"])
    if placement.chosen is None:
        raise CheckFailed(
            f"no int8 placement meets --int8-target {calib.target} (worst cosine to fp32 on the held-out images) "
            f"while keeping most of the work in int8; tried:\n{placement.table()}",
            hint="calibrate on more images like the ones you serve (--calib), lower --int8-target, or build fp32")
    kept = placement.chosen.float_layers
    cost = (f"; {latency[len(kept)] / latency[0]:.2f}x the every-layer-int8 latency at {smallest} on this machine"
            if latency.get(0) else "")
    log(f"int8 fallback: {len(kept)} layer(s) kept in float ({placement.chosen.float_share:.2%} of the work{cost}): "
        f"{', '.join(kept) or 'none'}")
    if not placement.met:
        fp32 = [p for p in result["profiles"] if p["precision"] != "int8"]
        missed = ", ".join(f"profile {p['profile']} worst cosine {p['worst']:.4f}" for p in fp32)
        log(f"int8 misses --int8-target {calib.target} on {missed}: built in fp32 "
            f"({plan.covered_ranges([p['profile'] for p in fp32])})")
    return result


def _latency_ms(session, x, runs: int = LATENCY_RUNS) -> float:
    """Median wall milliseconds of ``runs`` calls after one unrecorded call: what a trial placement costs in speed
    on the build machine, recorded beside its multiply-add share (which understates it: a float layer also
    breaks the int8 chain around it, and a float stem convolution is slow)."""
    from rsz_export.interface import INPUT_NAME

    session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 3)


def precision_groups(plan: Plan, report: dict | None) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """(precision, plan profile indices) to build, int8 first, when the placement in a calibration's ``report``
    keeps some profiles in fp32; None when every profile is int8 (or nothing was judged per profile)."""
    judged = ((report or {}).get("int8_fallback") or {}).get("profiles") or ()
    fp32 = tuple(p["profile"] for p in judged if p["precision"] != "int8")
    if not fp32:
        return None
    int8 = tuple(i for i in range(len(plan.profiles)) if i not in fp32)
    return tuple((precision, group) for precision, group in (("int8", int8), ("fp32", fp32)) if group)
