"""The int8 build's calibration stage: per-tensor ranges from the calibration set, saved as a JSON artifact.

The ranges file is named by the calibration's key (the export, the set's files and sizes, the method, the plan,
the held-out images and the accuracy target) and recorded in the manifest with its sha256. A rebuild with the same
inputs reuses it; one whose recorded file was changed stops with an IntegrityError (exit 4) instead of building
engines from ranges nobody calibrated. A rebuild that changes only the held-out images or the target (the same
``ranges_key``) takes the previous file's ranges, checked by its recorded sha256, and measures only what the
held-out images decide (the coverage report and the placement).
"""

from __future__ import annotations

import contextlib
import json
import resource
from pathlib import Path

from rsz_export import __version__
from rsz_export.artifacts.manifest import CalibrationRecord, FileRecord, file_record, verify_file
from rsz_export.errors import IntegrityError, read_small_file
from rsz_export.model.calibration import FORMAT, read_ranges
from rsz_export.model.calibration_set import CalibrationSet
from rsz_export.pipeline.context import BuildContext
from rsz_export.pipeline.keys import calibration_name, ranges_key


def _record(out_dir: Path, path: Path, calib: CalibrationSet, seconds: float, data: dict) -> CalibrationRecord:
    images = tuple(i.to_dict() for i in calib.items)
    report = {k: data.get(k) for k in ("coverage", "int8_fallback")}
    return CalibrationRecord(file_record(out_dir, path), calib.method, calib.source, images, seconds, calib.warning,
                             report)


def _reused(ctx: BuildContext) -> CalibrationRecord | None:
    """The previous manifest's calibration when its key matches; IntegrityError when its file was changed."""
    previous, out_dir = ctx.previous, ctx.out_dir
    if previous is None or previous.calibration is None or ctx.recorded.calibration != ctx.keys.calibration:
        return None
    record = previous.calibration
    try:
        verify_file(out_dir, record.file)
    except (IntegrityError, FileNotFoundError) as exc:
        message = getattr(exc, "message", None) or f"{out_dir / record.file.file} is missing"
        raise IntegrityError(
            f"the int8 calibration changed since it was recorded: {message}",
            hint="to calibrate again and replace it: rsz-export build --force",
        ) from None
    return record


def _previous_ranges(ctx: BuildContext, key: str):
    """The previous manifest's calibration as a CalibrationRun when its ranges were made for ``key`` and its file
    still matches its recorded sha256; else None."""
    from rsz_export.model.calibration import CalibrationRun

    previous = ctx.previous
    if previous is None or previous.calibration is None:
        return None
    path = ctx.out_dir / previous.calibration.file.file
    with contextlib.suppress(OSError, ValueError, IntegrityError, FileNotFoundError):
        verify_file(ctx.out_dir, previous.calibration.file)
        data = json.loads(read_small_file(path, str(path), IntegrityError).decode("utf-8"))
        if data.get("ranges_key") == key:
            return CalibrationRun(data["method"], read_ranges(path), len(data.get("images") or ()),
                                  float(data.get("seconds", 0.0))), path
    return None


def _adopted(target: Path, key: str) -> dict | None:
    """A complete calibration file for this key left by a run that stopped before its manifest."""
    if target.is_file():
        with contextlib.suppress(OSError, ValueError, IntegrityError):
            data = json.loads(read_small_file(target, str(target), IntegrityError).decode("utf-8"))
            if data.get("format") == FORMAT and data.get("key") == key:
                read_ranges(target)
                return data
    return None


def calibration_stage(ctx: BuildContext, calib: CalibrationSet, onnx: FileRecord, backend: str) -> CalibrationRecord:
    """The ranges for this build: reused when the key matches (and the file is unchanged), else calibrated; the
    placement judged on the Q/DQ model ``backend``'s engines are made from."""
    out_dir, log, keys, force = ctx.out_dir, ctx.log, ctx.keys, ctx.spec.force
    if not force and (record := _reused(ctx)) is not None:
        log(f"reusing the int8 calibration {record.file.file} (same export, images, method and plan)")
        return record
    target = out_dir / calibration_name(keys)
    if not force and (data := _adopted(target, keys.calibration)) is not None:
        log(f"reusing {target.name}, finished by an earlier run that stopped before its manifest")
        return _record(out_dir, target, calib, float(data.get("seconds", 0.0)), data)
    from rsz_export.model.calibration import calibrate, write_ranges
    from rsz_export.pipeline.int8_placement import coverage_report, fallback_placement

    threads, onnx_path = ctx.spec.options.threads, out_dir / onnx.file
    import onnxruntime

    key = ranges_key(calib.key_data(), onnx.sha256, ctx.spec.plan.to_dict(), onnxruntime.__version__)
    reused = None if force else _previous_ranges(ctx, key)
    if reused is not None:
        run, source = reused
        log(f"reusing the int8 ranges of {source.name} (same export, images, method and plan; only the held-out "
            f"images or the target changed)")
    else:
        log(f"calibrating int8 ranges ({calib.method}) on {len(calib.items)} image(s) from {calib.source}")
        run = calibrate(onnx_path, calib.feeds(), calib.method, threads, log)
    peak_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # kilobytes on Linux
    if reused is None:
        log(f"calibrated {len(run.ranges)} tensors in {run.seconds:.1f} s (process peak {peak_mib} MiB)")
    facts = {"coverage": coverage_report(onnx_path, run.ranges, calib, ctx.spec.plan, threads, log),
             "int8_fallback": None}
    if calib.target is not None:
        from rsz_export.backends import load_backend

        facts["int8_fallback"] = fallback_placement(onnx_path, run.ranges, calib, ctx.spec.plan, threads, log,
                                                    load_backend(backend).int8_model())
    holdout = None if calib.holdout is None else {"root": str(calib.holdout.root.resolve()),
                                                  "files": [f for f, _ in calib.holdout.measured()]}
    write_ranges(target, run, key=keys.calibration, ranges_key=key, source=calib.source, seed=calib.seed,
                 images=[i.to_dict() for i in calib.items], process_peak_rss_mib=peak_mib, tool_version=__version__,
                 onnx_sha256=onnx.sha256, holdout=holdout, **facts)
    return _record(out_dir, target, calib, round(run.seconds, 2), facts)
