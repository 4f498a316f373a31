"""benchmarks/results/amd-epyc-2c-2026-11-26.json: the standard CPU sweep (benchmarks/run_standard.py)."""

from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/amd-epyc-2c-2026-11-26.json"


def row(size: int, backend: str = "onnxruntime", variant: str = "dynamic") -> str:
    return f"rows[size={size}x{size},backend={backend},variant={variant},batch=1]"


def ort_rows(record) -> list[dict]:
    return [r for r in record["rows"] if r["backend"] == "onnxruntime" and r["variant"] == "dynamic"]


def dyn_over_static(record) -> list[float]:
    return sorted(r["dynamic_over_static"] for r in ort_rows(record))


def share(side: int):
    return lambda r: 100 * at(r, f"paired[side={side}]/peak_share")


def readme_row(size: int) -> Quote:
    torch = f"{row(size, 'torch', 'eager-fp32')}/p50_ms"
    return Quote("README.md", f"| {size}x{size} | {{}} ms | {{}} ms | {{}} ms | {{}}x | {{}} |",
                 (f"{row(size)}/p50_ms", f"{row(size, variant='static')}/p50_ms", torch,
                  lambda r: at(r, torch) / at(r, f"{row(size)}/p50_ms"), f"{row(size)}/gflops_per_s"))


def fitted_b(record) -> float:
    """The slope of the cost model ``plan --images`` fits through the 224 and 800 p50s (ms per 1000 pixels)."""
    return (at(record, f"{row(800)}/p50_ms") - at(record, f"{row(224)}/p50_ms")) / ((800**2 - 224**2) / 1000)


RECORD = Record(FILE, (
    *(readme_row(size) for size in (224, 320, 416, 576, 800)),
    Quote("README.md", "ONNX Runtime is {}x faster than PyTorch eager at 224x224 and {}x at 800x800",
          ("paired[side=224]/speedup", "paired[side=800]/speedup")),
    Quote("README.md", "runs at {}% (224) and {}% (800) of the rate of an FP32 matrix product",
          (share(224), share(800))),
    Quote("README.md", "(dynamic/static {}-{}, unpaired",
          (lambda r: dyn_over_static(r)[0], lambda r: dyn_over_static(r)[-1])),
    Quote("README.md", "The harness adds {}% (within noise)", (lambda r: 100 * at(r, "harness_overhead/overhead"),)),
    Quote("docs/bench.md", "| ORT vs torch eager at 224x224, paired windows | >= 1.5x | {}x |",
          ("paired[side=224]/speedup",)),
    Quote("docs/bench.md", "| ORT vs torch eager at 800x800, paired windows | >= 2.0x | {}x |",
          ("paired[side=800]/speedup",)),
    Quote("docs/bench.md", "| ORT share of the ORT matmul rate at 224 / 800, paired windows | >= 70% | {}% / {}% |",
          (share(224), share(800))),
    Quote("docs/bench.md", "| ORT share of the peak measured once, sweep (lowest, 800x800) | >= 70% | {}% |",
          (lambda r: 100 * min(x["peak_share"] for x in r["rows"] if x["backend"] == "onnxruntime"),)),
    Quote("docs/bench.md", "| dynamic / static, worst of 19 sizes (224x224) | <= 1.05 | {} | no: the sweep is "
          "unpaired; 18 of 19 sizes lie in {}..{} |",
          (lambda r: dyn_over_static(r)[-1], lambda r: dyn_over_static(r)[0], lambda r: dyn_over_static(r)[-2])),
    Quote("docs/bench.md", "| harness overhead vs bare `InferenceSession.run` at 224 | <= 2% | {}% |",
          (lambda r: 100 * at(r, "harness_overhead/overhead"),)),
    Quote("docs/serving.md", "(default `224={},800={}`", (f"{row(224)}/p50_ms", f"{row(800)}/p50_ms")),
    Quote("docs/serving.md", "b = {} ms per 1000", (fitted_b,)),
))

MARKDOWN = Record("benchmarks/results/amd-epyc-2c-2026-11-26.md",
                  cited_only="the report rendered from the JSON beside it, whose figures RECORD checks")
PLOT = Record("benchmarks/results/amd-epyc-2c-2026-11-26.png", cited_only="the plot of the JSON beside it")
RECORDS = (RECORD, MARKDOWN, PLOT)
