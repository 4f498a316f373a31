"""benchmarks/results/int8-target-amd-epyc-2c-2026-12-07.json: the int8 build with the earlier default target
(0.995) on photographs calibration never saw, on a CPU without VNNI (benchmarks/int8_target.py): why the default
is now 0.996."""

from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/int8-target-amd-epyc-2c-2026-12-07.json"

RECORD = Record(FILE, (
    Quote("docs/int8.md", "the build kept {} layers in float, met the target on its held-out photographs, and kept a "
          "median cosine of {} at 224x224 on the unseen ones, just under 0.995.",
          (lambda r: len(at(r, "builds/default/int8_fallback/float_layers")),
           "accuracy/0/cpu_int8_default/cosine_median")),
))

RECORDS = (RECORD,)
