"""benchmarks/results/int8-amd-epyc-2c-2026-12-02.json: int8 calibration, speed and accuracy (benchmarks/int8.py)."""

import json
from pathlib import Path

from rsz_export.validate.tolerance import INT8_RTOL
from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/int8-amd-epyc-2c-2026-12-02.json"
HELD_OUT = "accuracy_summary/held_out"
CPU = f"{HELD_OUT}.cpu_int8"
CALIBRATION_FIELDS = ("images", "seconds", "build_seconds", "process_peak_rss_mib")


def lowest(group: str, model: str, field: str):
    return lambda r: min(row[group][model][field] for row in r["accuracy"])


def accuracy_row(index: int, size: str) -> Quote:
    """A row of docs/int8.md's accuracy table: the held-out photograph, CPU model then TensorRT Q/DQ model."""
    cells = [f"accuracy/{index}/held_out/{model}/{field}" for model in ("cpu_int8", "tensorrt_qdq")
             for field in ("cosine_median", "cosine_worst", "rel_l2_worst", "top5_containment")]
    return Quote("docs/int8.md", f"| {size} | {{}} / {{}} | {{}} | {{}} | {{}} / {{}} | {{}} | {{}} |", tuple(cells))


def validate_row(label: str, group: str, model: str) -> Quote:
    summary = f"accuracy_summary/{group}.{model}"
    return Quote("docs/validate.md", f"| {label} | {{}} | {{}} | {{}} | {{}} |",
                 (f"{summary}/cosine_worst", f"{summary}/rel_l2_worst", lowest(group, model, "top1"),
                  lowest(group, model, "top5_containment")))


SIZES = [row["size"] for row in json.loads((Path(__file__).parents[2] / FILE).read_text())["accuracy"]]

RECORD = Record(FILE, (
    Quote("README.md", "the ONNX Runtime int8 engine was {}x faster than the fp32 engine at 224x224 and {}x at 800x800",
          ("speed/0/speedup", "speed/1/speedup")),
    Quote("README.md", "the logits' cosine to fp32 was at least {} at every size of the 224..800 grid ({} for the "
          "TensorRT Q/DQ model", (f"{HELD_OUT}.cpu_int8/cosine_worst", f"{HELD_OUT}.tensorrt_qdq/cosine_worst")),
    Quote("README.md", "Calibration with the defaults took {} s, the build process peaking at {} GB",
          ("calibration/default/seconds", lambda r: at(r, "calibration/default/process_peak_rss_mib") / 1024)),
    *(Quote("docs/int8.md", f"| {size} | {{}} ms | {{}} ms | {{}}x |",
            tuple(f"speed/{i}/{k}" for k in ("fp32_p50_ms", "int8_p50_ms", "speedup")))
      for i, size in enumerate(("224x224", "800x800"))),
    Quote("docs/int8.md", "**Calibration**: {} crops of three photographs given with `--calib`: {} s of calibration "
          "({} s for the whole build), process peak {} MiB; the default ({} crops of the bundled photographs): {} s "
          "({} s build), peak {} MiB.", tuple(f"calibration/{run}/{field}" for run in ("given", "default")
                                              for field in CALIBRATION_FIELDS)),
    *(accuracy_row(i, size) for i, size in enumerate(SIZES)),
    validate_row("`benchmarks/int8.py`: CPU model, held-out photograph (4 crops) | 17 sizes, 224..800", "held_out",
                 "cpu_int8"),
    validate_row("the same, TensorRT Q/DQ model (exact Q/DQ arithmetic) | 17 sizes", "held_out", "tensorrt_qdq"),
    validate_row("the same, CPU model, the three calibration photographs (evaluation crop) | 17 sizes",
                 "calibration_photos", "cpu_int8"),
    Quote("docs/validate.md", "The preset allows about {}x the worst relative L2 error recorded on images ({});",
          (lambda r: INT8_RTOL / at(r, f"{CPU}/rel_l2_worst"), f"{CPU}/rel_l2_worst")),
))

RECORDS = (RECORD,)
