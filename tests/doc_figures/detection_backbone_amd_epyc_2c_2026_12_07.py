"""benchmarks/results/detection-backbone-amd-epyc-2c-2026-12-07.json (and its -with-opt-sizes twin): the detector
range's build (profiles/detection-backbone.toml, ONNX Runtime, fp32) and its validation with a feature build's
defaults, timed on the shared 2-core machine (benchmarks/detection_backbone.py)."""

from tests.doc_figures import Quote, Record

FILE = "benchmarks/results/detection-backbone-amd-epyc-2c-2026-12-07.json"
WITH_OPT = "benchmarks/results/detection-backbone-amd-epyc-2c-2026-12-07-with-opt-sizes.json"

RECORD = Record(FILE, (
    Quote("docs/validate.md", "(load average {} before the run and {} after), the build took {} s and `validate` {} s: "
          "{} s together, under the 5-minute target, for {} cases (5 maps at {} sizes, on the export and on the "
          "engine), every one passed, worst relative L2 {}",
          ("load_average_before/0", "load_average_after/0", "build_s", "validate_s", "total_s", "validate_cases",
           "validate_sizes", "worst_rel_l2")),
    Quote("docs/validate.md", "The two commands used {} s of CPU time together", ("cpu_s",)),
    Quote("README.md", "The detector range's build and validation took {} s together on the 2-core CPU machine",
          ("total_s",)),
))

WITH_OPT_RECORD = Record(WITH_OPT, (
    Quote("docs/validate.md", "With the opt sizes ({} sizes) the same run took {} s, at load average {} before and "
          "{} after", ("validate_sizes", "total_s", "load_average_before/0", "load_average_after/0")),
))

RECORDS = (RECORD, WITH_OPT_RECORD)
