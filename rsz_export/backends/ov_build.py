"""Building an OpenVINO engine: the exported ONNX (or, for int8, its checked CPU Q/DQ model) converted to one
OpenVINO IR whose batch, height and width are dynamic within the plan's bounds, weights kept in fp32; then one
compile into the engine folder's model cache, timed cold and warm.

The IR is two files (``.xml`` graph, ``.bin`` weights). OpenVINO writes both under one base name, so they are
saved in a private folder and each renamed onto its final name, the weights first: a run killed in between
leaves at most files no manifest names, which the next build removes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from rsz_export.artifacts.files import atomic_path
from rsz_export.artifacts.host import usable_cpus
from rsz_export.artifacts.manifest import EngineRecord, file_record
from rsz_export.backends import ov_support as ovs
from rsz_export.backends.base import BuildOptions
from rsz_export.errors import IntegrityError
from rsz_export.interface import INPUT_NAME, Log
from rsz_export.plan.profiles import Plan


def convert(onnx_path: Path, plan: Plan):
    """The ONNX as an ov.Model with its input's batch/height/width bounded by the plan; IntegrityError when
    OpenVINO cannot read it."""
    ov = ovs.load_openvino()

    try:
        model = ov.Core().read_model(str(onnx_path))
    except RuntimeError as exc:
        version = ovs.short_version(ov.__version__)
        raise IntegrityError(f"OpenVINO {version} cannot read {onnx_path}: {ovs.openvino_reason(exc)}") from None
    bounds = ovs.dynamic_bounds(plan)
    dims = [ov.Dimension(*bounds["batch"]), 3, ov.Dimension(*bounds["h"]), ov.Dimension(*bounds["w"])]
    model.reshape({INPUT_NAME: ov.PartialShape(dims)})
    return model


def save_ir(model, xml_target: Path, bin_target: Path) -> None:
    """Write the IR atomically: both files appear under their final names only when both are complete."""
    ov = ovs.load_openvino()

    for left in xml_target.parent.glob(".ir-*.tmp"):  # a killed build's private folder (we hold the build lock)
        shutil.rmtree(left, ignore_errors=True)
    private = Path(tempfile.mkdtemp(prefix=".ir-", suffix=".tmp", dir=xml_target.parent))
    try:
        ov.save_model(model, str(private / "model.xml"), compress_to_fp16=False)  # fp32 weights for every precision
        with atomic_path(bin_target) as tmp_bin, atomic_path(xml_target) as tmp_xml:
            os.replace(private / "model.bin", tmp_bin)
            os.replace(private / "model.xml", tmp_xml)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def timed_loads(xml: Path, bin_path: Path, settings: dict, cache_dir: Path) -> dict:
    """Compile the saved IR twice through the engine folder's cache: the first compile fills it (cold), the
    second reads it (warm). Returns the seconds of each and the precision the CPU compiled to."""
    ov = ovs.load_openvino()

    core = ov.Core()
    times = []
    for _ in range(2):
        started = time.perf_counter()
        model = core.read_model(str(xml), str(bin_path))
        compiled = core.compile_model(model, "CPU", ovs.compile_config(settings, cache_dir=str(cache_dir)))
        times.append(round(time.perf_counter() - started, 3))
    executed = ovs.executed_precision(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return {"cold_load_seconds": times[0], "warm_load_seconds": times[1], "compiled_precision": executed}


def build_engines(onnx_path: Path, plan: Plan, options: BuildOptions, out_dir: Path, log: Log,
                  capabilities: tuple[str, ...] = (), cpu: str = "") -> list[EngineRecord]:
    """Convert, save and pre-compile one IR serving every profile of ``plan``."""
    ov = ovs.load_openvino()

    started = time.perf_counter()
    out_dir = Path(out_dir)
    source, extra, facts = Path(onnx_path), [], {}
    if options.precision == "int8":
        from rsz_export.model.quantization import checked_qdq, cpu_qdq

        source, facts = checked_qdq(onnx_path, options.calibration, cpu_qdq(), plan, out_dir / ovs.QDQ_FILE,
                                    options.threads, log)
    version = ovs.short_version(ov.__version__)
    log(f"converting {source.name} to OpenVINO {version} IR (dynamic within {plan.covered_ranges()})")
    xml, bin_path = out_dir / ovs.XML_FILE, out_dir / ovs.BIN_FILE
    save_ir(convert(source, plan), xml, bin_path)
    settings = ovs.compile_settings(options.precision, options.threads or usable_cpus())
    loads = timed_loads(xml, bin_path, settings, out_dir / ovs.CACHE_DIR)
    log(f"compiled for {cpu or 'this CPU'}: cold {loads['cold_load_seconds']} s, "
        f"warm (model cache) {loads['warm_load_seconds']} s")
    extra = [file_record(out_dir, bin_path)] + ([file_record(out_dir, source)] if options.precision == "int8" else [])
    record = EngineRecord(
        name=ovs.NAME if options.precision == "fp32" else f"{ovs.NAME}-{options.precision}",
        backend=ovs.NAME,
        precision=options.precision,
        file=file_record(out_dir, xml),
        profiles=tuple(range(len(plan.profiles))),
        build_seconds=round(time.perf_counter() - started, 3),
        settings={**settings, "openvino_version": ov.__version__, "cpu": cpu, "capabilities": list(capabilities),
                  "dynamic_bounds": {k: list(v) for k, v in ovs.dynamic_bounds(plan).items()},
                  "cache_dir": ovs.CACHE_DIR, **loads, **facts},
        extra_files=tuple(extra),
    )
    return [record]
