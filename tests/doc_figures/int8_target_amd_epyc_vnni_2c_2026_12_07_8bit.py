"""benchmarks/results/int8-target-amd-epyc-vnni-2c-2026-12-07-8bit.json: the default int8 build
(``--int8-target`` 0.996) on a CPU with VNNI, whose CPU model has 8-bit weights, on photographs calibration never
saw, beside every layer int8 (benchmarks/int8_target.py)."""

import json
from pathlib import Path

from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/int8-target-amd-epyc-vnni-2c-2026-12-07-8bit.json"
DEFAULT = "accuracy_summary/cpu_int8_default"
FALLBACK = "builds/default/int8_fallback"
DATA = json.loads((Path(__file__).parents[2] / FILE).read_text())
SIZES = [row["size"] for row in DATA["accuracy"]]
SPEED = {row["size"]: i for i, row in enumerate(DATA["speed"])}


def table_row(index: int, size: str) -> Quote:
    row = f"accuracy/{index}"
    values = (f"{row}/cpu_int8_default/cosine_median", f"{row}/cpu_int8_default/cosine_worst",
              f"{row}/cpu_int8_default/rel_l2_worst", f"{row}/tensorrt_qdq_default/cosine_median",
              f"{row}/tensorrt_qdq_default/cosine_worst")
    return Quote("docs/int8.md", f"| {size} | {{}} / {{}} | {{}} | {{}} / {{}} |", values)


RECORD = Record(FILE, (
    Quote("docs/int8.md", "held-out photographs gave a worst cosine of {} at 224x224 and {} at 800x800, over the "
          "target: the build kept no layer in float ({} trial) and built every profile in int8 (worst held-out "
          "cosine, profile 0 to 3: {}, {}, {}, {})",
          (f"{FALLBACK}/trials/0/worst/224x224", f"{FALLBACK}/trials/0/worst/800x800",
           lambda r: len(at(r, f"{FALLBACK}/trials")), *(f"{FALLBACK}/profiles/{i}/worst" for i in range(4)))),
    *(table_row(i, size) for i, size in enumerate(SIZES)),
    Quote("docs/int8.md", "the default build's CPU model had a lowest median cosine of {} and a worst of {} (relative "
          "L2 at most {}); its TensorRT model (exact Q/DQ arithmetic, 8-bit weights on every CPU) {} and {}. The "
          "blue pack stayed at or above {}. Top-5 containment was 1.0 at every size; top-1 agreement {}-1.0",
          (f"{DEFAULT}/cosine_median_lowest", f"{DEFAULT}/cosine_worst", f"{DEFAULT}/rel_l2_worst",
           "accuracy_summary/tensorrt_qdq_default/cosine_median_lowest",
           "accuracy_summary/tensorrt_qdq_default/cosine_worst",
           lambda r: min(min(row["cpu_int8_default"]["cosine_per_image"][:2]) for row in r["accuracy"]),
           lambda r: min(row["cpu_int8_default"]["top1"] for row in r["accuracy"]))),
    Quote("docs/int8.md", "at 224x224 the default engine ran {}x fp32 ({} ms against {} ms) and at 800x800 {}x, the "
          "same as every layer int8 ({}x and {}x)",
          (f"speed/{SPEED['224x224']}/int8_default_speedup", f"speed/{SPEED['224x224']}/int8_default_p50_ms",
           f"speed/{SPEED['224x224']}/fp32_p50_ms", f"speed/{SPEED['800x800']}/int8_default_speedup",
           f"speed/{SPEED['224x224']}/int8_all_layers_speedup", f"speed/{SPEED['800x800']}/int8_all_layers_speedup")),
    Quote("docs/int8.md", "the default int8 build took {} s, of which calibration {} s and the held-out analysis {} s",
          ("builds/default/build_seconds", "builds/default/seconds", f"{FALLBACK}/seconds")),
    Quote("docs/validate.md", "{} with the 8-bit one of a VNNI CPU", (f"{DEFAULT}/cosine_worst",)),
    Quote("README.md", "the default build kept every layer int8 and ran {}x fp32 at 224x224 and {}x at 800x800, "
          "with a median cosine of at least {} and a worst of {} on photographs",
          (f"speed/{SPEED['224x224']}/int8_default_speedup", f"speed/{SPEED['800x800']}/int8_default_speedup",
           f"{DEFAULT}/cosine_median_lowest", f"{DEFAULT}/cosine_worst")),
))

RECORDS = (RECORD,)
