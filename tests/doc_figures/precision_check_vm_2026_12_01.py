"""benchmarks/results/precision-check-vm-2026-12-01.json: the fp16/bf16 error models (benchmarks/precision_check.py)."""

from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/precision-check-vm-2026-12-01.json"
SMALL = ("128x128", "97x161", "96x128")


def cells(model: str) -> tuple:
    """fp16 at 224x224 and 160x288, fp16's worst small size, then the same for bf16."""
    out = []
    for precision in ("fp16", "bf16"):
        base = f"rel_l2/{precision}/{model}"
        out += [f"{base}/224x224", f"{base}/160x288", lambda r, base=base: max(at(r, f"{base}/{s}") for s in SMALL)]
    return tuple(out)


RECORD = Record(FILE, (
    Quote("docs/tensorrt.md", "| weights rounded only (what ONNX Runtime computes from the fp16 graph) | {} / {} "
          "| {} | {} / {} | {} |", cells("weights only")),
    Quote("docs/tensorrt.md", "| every op output rounded too | {} / {} | {} | {} / {} | {} |",
          cells("every op output rounded")),
    Quote("docs/tensorrt.md", "| stored tensors rounded (**the check**) | {} / {} | {} | {} / {} | {} |",
          cells("stored tensors rounded (the check)")),
    Quote("docs/tensorrt.md", "| **bound** | **{}** | | **{}** | |", ("rel_l2/fp16/bound", "rel_l2/bf16/bound")),
))

RECORDS = (RECORD,)
