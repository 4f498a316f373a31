"""benchmarks/results/int8-target-amd-epyc-vnni-2c-2026-12-07.json: the default int8 build (``--int8-target``
0.996) with the 7-bit CPU model (what a CPU without VNNI builds) on a VNNI CPU, on photographs calibration never
saw (benchmarks/int8_target.py)."""

from rsz_export.validate.tolerance import INT8_MIN_COSINE
from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/int8-target-amd-epyc-vnni-2c-2026-12-07.json"
DEFAULT = "accuracy_summary/cpu_int8_default"
FALLBACK = "builds/default/int8_fallback"


def kept(index: int, key: str):
    return f"{FALLBACK}/float_layers/{index}/{key}"


RECORD = Record(FILE, (
    Quote("docs/int8.md", "the default build kept {} layers in float: `node_add_95` (a residual Add, sensitivity {}, "
          "{}% of the multiply-adds), `node_Conv_762` (layer1's first downsampling 1x1 convolution, {}, {}%) and "
          "`node_Conv_754` (the 7x7 stem convolution, {}, {}%): {}% of the work in float, {} trials. On the unseen "
          "photographs its CPU model had a lowest median cosine of {} and a worst of {} (every layer int8: {} and {}); "
          "the build took {} s with the machine shared.",
          (lambda r: len(at(r, f"{FALLBACK}/float_layers")), kept(0, "sensitivity"),
           lambda r: 100 * at(r, kept(0, "flop_share")), kept(1, "sensitivity"),
           lambda r: 100 * at(r, kept(1, "flop_share")), kept(2, "sensitivity"),
           lambda r: 100 * at(r, kept(2, "flop_share")), lambda r: 100 * at(r, f"{FALLBACK}/float_share"),
           lambda r: len(at(r, f"{FALLBACK}/trials")), f"{DEFAULT}/cosine_median_lowest", f"{DEFAULT}/cosine_worst",
           "accuracy_summary/cpu_int8_all_layers/cosine_median_lowest",
           "accuracy_summary/cpu_int8_all_layers/cosine_worst", "builds/default/build_seconds")),
    Quote("docs/int8.md", "The float layers cost far more than their {}% of the multiply-adds",
          (lambda r: 100 * at(r, f"{FALLBACK}/float_share"),)),
    Quote("docs/validate.md", "a cosine about {} below the worst the default build recorded on photographs its "
          "calibration never saw ({}",
          (lambda r: at(r, f"{DEFAULT}/cosine_worst") - INT8_MIN_COSINE, f"{DEFAULT}/cosine_worst")),
))

RECORDS = (RECORD,)
