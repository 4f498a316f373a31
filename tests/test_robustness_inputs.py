"""Issue 7's bad-input matrix through the real CLI: one clear message, a documented exit code, no traceback,
nothing half-written. Options and ``build --onnx`` here (docs/robustness.md sections 1 and 2; regenerate the
option rows with ``python tests/test_robustness_inputs.py``); damaged folders, outputs and images in
tests/test_robustness_folders.py. Cases already covered by tests/test_cli.py are not repeated.

Cases that need built engines share ``fast_engines``: the session's export imported with ``build --onnx``
and its weights saved as a file, so every validate/predict subprocess loads the reference in about a second
instead of regenerating seeded weights.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import run_cli

# ---- shared fixtures (also imported by test_robustness_runs.py; the disk cache makes a second call free) ----


@pytest.fixture(scope="session")
def reference_weights(engines_dir, tmp_path_factory) -> Path:
    """The session export's weights as a state_dict file (loads in a second, unlike regenerated random ones)."""
    path = tmp_path_factory.getbasetemp() / "robust-weights" / "reference.pt"
    if not path.exists():
        import torch

        from rsz_export.manifest import load_manifest
        from rsz_export.validate import reference_model

        model = reference_model(load_manifest(engines_dir).weights, engines_dir)
        path.parent.mkdir(exist_ok=True)
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
    return path


@pytest.fixture(scope="session")
def fast_engines(onnx_path, reference_weights, tmp_path_factory) -> Path:
    """A 224..256 ORT build from the session export (``build --onnx``) whose reference is a weights file."""
    out = tmp_path_factory.getbasetemp() / "robust-engines"
    if not (out / "manifest.json").exists():
        from rsz_export.build import BuildSpec, build
        from rsz_export.planning import PlanSpec, plan_profiles

        plan = plan_profiles(PlanSpec(224, 256))
        build(
            BuildSpec(
                plan,
                out,
                backend="onnxruntime",
                weights=str(reference_weights),
                onnx=onnx_path,
                command="pytest robustness fixture",
            )
        )
    return out


@pytest.fixture()
def damaged(fast_engines, tmp_path) -> Path:
    """A private copy of ``fast_engines`` to damage."""
    return Path(shutil.copytree(fast_engines, tmp_path / "engines"))


def onnx_build_args(onnx: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    """``build`` from the session's ONNX and reference weights over 224..256 (the fast path: no export)."""
    return [
        "build",
        "--min",
        "224",
        "--max",
        "256",
        "--onnx",
        str(onnx),
        "--weights",
        str(weights),
        "--out",
        str(out),
        *extra,
    ]


def assert_clean_failure(result, code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def assert_no_temp_files(folder: Path) -> None:
    assert not [p for p in Path(folder).rglob("*.tmp")], list(Path(folder).rglob("*.tmp"))


def engine_file(folder: Path) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder / manifest["engines"][0]["file"]["file"]


def onnx_file(folder: Path) -> Path:
    return folder / json.loads((folder / "manifest.json").read_text())["onnx"]["file"]


# ---- options: ranges, backends and precisions, sizes, batches (fail before torch is imported) -----------

OPTION_CASES = [
    ("range negative", ["build", "--min", "-224", "--max", "800"], 2, "--min -224 is outside"),
    ("range absurdly large", ["build", "--min", "224", "--max", "100000"], 2, "--max 100000 is outside"),
    ("range non-numeric max", ["plan", "--min", "224", "--max", "big"], 2, "'big' is not a valid integer"),
    ("range missing max", ["build", "--min", "224"], 2, "give the range with --min and --max"),
    ("profiles too many", ["plan", "--min", "224", "--max", "800", "--profiles", "99"], 2, "at most 16"),
    ("profiles negative", ["plan", "--min", "224", "--max", "800", "--profiles", "-1"], 2, "at least 1"),
    ("batch reversed", ["plan", "--min", "224", "--max", "800", "--batch", "8-1"], 2, "min <= opt <= max"),
    ("batch non-numeric", ["plan", "--min", "224", "--max", "800", "--batch", "many"], 2, "cannot read batch 'many'"),
    (
        "precision bf16 on onnxruntime",
        ["build", "--min", "224", "--max", "800", "--precision", "bf16", "--backend", "onnxruntime"],
        2,
        "precision bf16 is not available on backend onnxruntime",
    ),
    ("predict unknown backend", ["predict", "--backend", "coreml", "x.jpg"], 2, "'coreml' is not one of"),
    ("sizes trailing x", ["validate", "nodir", "--sizes", "224x"], 2, "cannot read size '224x'"),
    ("sizes words", ["validate", "nodir", "--sizes", "abc"], 2, "cannot read size 'abc'"),
    ("sizes zero", ["validate", "nodir", "--sizes", "0"], 2, "height 0 is outside"),
    ("sizes too wide", ["validate", "nodir", "--sizes", "224x99999"], 2, "width 99999 is outside"),
    ("sizes empty", ["validate", "nodir", "--sizes="], 2, "no sizes in ''"),
    ("sizes fractional (bench)", ["bench", "nodir", "--sizes", "22.5"], 2, "cannot read size '22.5'"),
    ("sweep reversed (bench)", ["bench", "nodir", "--sweep", "800:224:32"], 2, "needs STEP > 0 and STOP >= START"),
    ("sizes malformed (sweep)", ["sweep", "nodir", "--images", "nodir", "--sizes", "224x"], 2, "cannot read size"),
    ("random inputs too many", ["validate", "nodir", "--random-inputs", "100"], 2, "0..64"),
    ("negative tolerance", ["validate", "nodir", "--rtol", "-1"], 2, "--rtol must be a finite number >= 0"),
    (
        "export into a file's path",
        ["export", "-o", "/dev/null/resnet50.onnx"],
        5,
        "cannot write into /dev/null: it is a file, not a directory",
    ),
    ("no manifest (validate)", ["validate", "nodir"], 4, "no manifest at nodir/manifest.json"),
    ("no manifest (bench)", ["bench", "nodir"], 4, "no manifest at nodir/manifest.json"),
]


@pytest.mark.parametrize("case,args,code,phrase", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_option(tmp_path, case, args, code, phrase):
    result = run_cli(*args, "--out", str(tmp_path / "out")) if args[0] == "build" else run_cli(*args, cwd=tmp_path)
    assert_clean_failure(result, code, phrase)
    assert not (tmp_path / "out").exists()


# ---- a user-provided ONNX: build --onnx --------------------------------------------------------------


def tiny_onnx(
    path: Path,
    input_name="images",
    input_shape=("batch", 3, "height", "width"),
    elem="FLOAT",
    output_shape=("batch", 1000),
    metadata: dict | None = None,
) -> Path:
    """A small stand-in model: global average pool, then a [C,1000] MatMul (input rank 4) or a Flatten."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    channels = input_shape[1] if len(input_shape) > 1 and isinstance(input_shape[1], int) else 3
    dtype = getattr(TensorProto, elem)
    nodes = [helper.make_node("ReduceMean", [input_name, "axes"], ["pooled"], keepdims=0)]
    inits = [numpy_helper.from_array(np.arange(2, len(input_shape), dtype=np.int64), "axes")]
    nodes.append(helper.make_node("MatMul", ["pooled", "w"], ["logits"]))
    inits.append(numpy_helper.from_array(np.ones((channels, output_shape[-1]), dtype=np.float32), "w"))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, dtype, list(input_shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(output_shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    save(model, str(path))
    return path


RANDOM_METADATA = {
    "rsz_export.weights_id": "random",
    "rsz_export.weights_sha256": "0" * 64,
    "rsz_export.weights_source": "numpy PCG64 seed 0",
}
ONNX_CASES = [
    ("wrong input name", {"input_name": "x"}, 2, "its inputs are ['x'], expected exactly one named 'images'"),
    ("wrong rank", {"input_shape": ("batch", 3, "height")}, 2, "has rank 3"),
    ("wrong channels", {"input_shape": ("batch", 1, "height", "width")}, 2, "has 1 channels (dim 1), expected 3"),
    ("wrong dtype", {"elem": "FLOAT16"}, 2, "input 'images' is FLOAT16, expected FLOAT"),
    ("fixed size outside the plan", {"input_shape": ("batch", 3, 224, 224)}, 2, "height is fixed at 224 but the plan"),
    ("wrong output", {"output_shape": ("batch", 10)}, 2, "expected one 'logits' of shape [batch,1000]"),
    ("no weights metadata, no --weights", {}, 2, "does not say which weights it was exported from"),
]


@pytest.mark.parametrize("case,kwargs,code,phrase", ONNX_CASES, ids=[c[0] for c in ONNX_CASES])
def test_build_from_foreign_onnx_is_refused(tmp_path, case, kwargs, code, phrase):
    kwargs = {"metadata": RANDOM_METADATA, **kwargs} if case.startswith("wrong") or "fixed" in case else kwargs
    model = tiny_onnx(tmp_path / "other.onnx", **kwargs)
    out = tmp_path / "out"
    result = run_cli("build", "--min", "224", "--max", "288", "--onnx", str(model), "--out", str(out))
    assert_clean_failure(result, code, phrase)
    assert not out.exists()


@pytest.mark.parametrize(
    "content,phrase",
    [(b"", "it has no graph"), (b"\x08\x07garbage\xff" * 50, "not a readable ONNX"), (None, "does not exist")],
    ids=["empty", "garbage", "missing"],
)
def test_build_from_unreadable_onnx(tmp_path, content, phrase):
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    result = run_cli("build", "--min", "224", "--max", "288", "--onnx", str(model), "--out", str(tmp_path / "out"))
    assert_clean_failure(result, 4, phrase)
    assert not (tmp_path / "out").exists()


def test_build_from_onnx_with_external_data_is_refused(tmp_path):
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(tiny_onnx(tmp_path / "m.onnx", metadata=RANDOM_METADATA)))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save(model, str(tmp_path / "ext.onnx"))
    result = run_cli(
        "build", "--min", "224", "--max", "288", "--onnx", str(tmp_path / "ext.onnx"), "--out", str(tmp_path / "out")
    )
    assert_clean_failure(result, 4, "external data")


def test_build_from_fitting_onnx_with_weights_validates_against_them(tmp_path, reference_weights):
    """A fixed 224x224 model fits a 224..224 plan; with --weights it builds, and validate runs it (and, being
    another model, fails parity with exit 1, not a crash)."""
    model = tiny_onnx(tmp_path / "fixed.onnx", input_shape=("batch", 3, 224, 224))
    out = tmp_path / "out"
    result = run_cli(
        "build",
        "--min",
        "224",
        "--max",
        "224",
        "--onnx",
        str(model),
        "--weights",
        str(reference_weights),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"]["id"] == "file" and "--onnx" in manifest["command"]
    checked = run_cli("validate", str(out), "--replace-sizes", "--sizes", "224", "--random-inputs", "0")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr


if __name__ == "__main__":  # print the option cases as docs/robustness.md rows, from real runs
    for case, args, _code, _phrase in OPTION_CASES:
        run = run_cli(*args, "--out", "/tmp/rsz-doc-out") if args[0] == "build" else run_cli(*args, cwd=Path("/tmp"))
        message = " ".join(
            line.strip() for line in run.stderr.strip().splitlines() if not line.startswith(("Usage", "Try"))
        )
        sys.stdout.write(f"| {case} | `rsz-export {' '.join(args)}` | {message} | {run.returncode} |\n")
