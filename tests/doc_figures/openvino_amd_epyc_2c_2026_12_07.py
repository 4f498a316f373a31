"""benchmarks/results/openvino-amd-epyc-2c-2026-12-07.json and ...-run2.json: OpenVINO against ONNX Runtime on the
same CPU, two runs the same afternoon (benchmarks/openvino_cpu.py).

The documents write most figures as "run 1 / run 2" pairs. Such a quote is declared once, in run 1's record, its
run 2 figures read from run 2's file (``run2``); the accuracy, which the documents give once as the same in both
runs, is quoted by both records."""

import json
from pathlib import Path

from tests.doc_figures import Quote, Record, at

RUN1 = "benchmarks/results/openvino-amd-epyc-2c-2026-12-07.json"
RUN2 = "benchmarks/results/openvino-amd-epyc-2c-2026-12-07-run2.json"
RUN2_DATA = json.loads((Path(__file__).parents[2] / RUN2).read_text(encoding="utf-8"))
SIZES = ("224x224", "800x800")


def run2(path: str):
    """A figure of run 2 in a quote of run 1's record."""
    return lambda _: at(RUN2_DATA, path)


def both(*paths: str) -> tuple:
    """Each path's figure in run 1, then in run 2: the documents' "run 1 / run 2"."""
    return tuple(value for path in paths for value in (path, run2(path)))


def speed(size: str, engine: str) -> str:
    return f"speed[size={size}]/engines/{engine}/vs_ort_fp32"


def speed_row(doc: str, label: str, engine: str) -> Quote:
    return Quote(doc, f"| {label} | {{}}x / {{}}x | {{}}x / {{}}x |", both(*(speed(s, engine) for s in SIZES)))


def cosine(size: str, engine: str) -> str:
    return f"accuracy[size={size}]/cosine_worst_vs_ort_fp32/{engine}"


def accuracy() -> tuple[Quote, ...]:
    """The accuracy figures, which the documents give once as they are the same in both runs: each record quotes
    them, so both files are checked."""
    int8 = (cosine("224x224", "ov-int8"), cosine("800x800", "ov-int8"), cosine("224x224", "ort-int8"),
            cosine("800x800", "ort-int8"))
    return (
        Quote("docs/openvino.md", "fp32's logits: OpenVINO fp32 {} at both sizes; int8 {} (224) and {} (800) on "
              "OpenVINO against {} and {} on ONNX Runtime; OpenVINO int8 against ONNX Runtime int8 {} and {}.",
              (lambda r: min(at(r, cosine(s, "ov-fp32")) for s in SIZES), *int8,
               *(f"accuracy[size={s}]/ov_int8_vs_ort_int8_cosine_worst" for s in SIZES))),
        Quote("README.md", "(worst cosine {}/{} against {}/{} at 224/800)", int8),
    )


def seconds(where) -> object:
    """A figure recorded in milliseconds, shown in seconds."""
    return lambda r: (where(r) if callable(where) else at(r, where)) / 1000


def gib(engine: str):
    """A build's peak memory, recorded in MiB, shown in GB (GiB, as README.md's other build figures)."""
    return lambda r: at(r, f"build_peak_rss_mib/{engine}") / 1024


ROWS = (("ONNX Runtime int8", "ONNX Runtime int8 (CPU Q/DQ model)", "ort-int8"),
        ("OpenVINO fp32", "OpenVINO fp32", "ov-fp32"),
        ("OpenVINO int8 (the same Q/DQ model)", "OpenVINO int8 (same Q/DQ model)", "ov-int8"))
LOAD = "load/{}/{}"


def load(field: str) -> tuple:
    return both(*(LOAD.format(engine, field) for engine in ("ov-fp32", "ov-int8")))


RUN1_RECORD = Record(RUN1, (
    *(speed_row("README.md", readme, engine) for readme, _, engine in ROWS),
    *(speed_row("docs/openvino.md", doc, engine) for _, doc, engine in ROWS),
    speed_row("docs/openvino.md", "OpenVINO fp32 reshaped to the static size", "ov-fp32-static"),
    Quote("docs/openvino.md", "The dynamic engine against its static twin: {}x and {}x at 224, {}x and {}x at 800",
          both(*(f"speed[size={s}]/ov_fp32_dynamic_over_static" for s in SIZES))),
    Quote("docs/openvino.md", "(800 -> 224, 224 -> 800): {} s / {} s and {} s / {} s on this loaded machine",
          tuple(seconds(where) for s in SIZES
                for where in both(f"speed[size={s}]/ov_fp32_first_call_after_size_change_ms"))),
    Quote("docs/openvino.md", "cold compile {} / {} s (fp32) and {} / {} s (int8), warm from the model cache {} / {} s "
          "and {} / {} s (both measured by the build); a fresh runner (reading and hashing both files, building the "
          "model, compiling through the cache) {} / {} s and {} / {} s.",
          (*load("build_cold_s"), *load("build_warm_s"), *load("runner_open_s"))),
    Quote("docs/openvino.md", "Build peak memory (whole `rsz-export build` process, run 1; run 2 within 2%): ONNX "
          "Runtime fp32 {} GB, int8 {} GB (calibration); OpenVINO fp32 {} GB, int8 {} GB (calibration reused): all "
          "under the 4 GB target.", tuple(gib(engine) for engine in ("ort-fp32", "ort-int8", "ov-fp32", "ov-int8"))),
    *accuracy(),
))

RUN2_RECORD = Record(RUN2, accuracy())

RECORDS = (RUN1_RECORD, RUN2_RECORD)
