"""The TensorRT backend's pure parts, on the CPU: profile shapes, versions, options, inspector JSON, parser errors,
compatibility, and what happens without TensorRT."""

from __future__ import annotations

import importlib.util
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsz_export.artifacts.manifest import EngineRecord, FileRecord, Manifest, WeightsRecord
from rsz_export.backends import require_backend, trt_env
from rsz_export.backends import trt as trt_backend
from rsz_export.backends import trt_support as ts
from rsz_export.backends.base import BuildOptions
from rsz_export.errors import EXIT_ENVIRONMENT, EnvironmentProblem, UsageError
from rsz_export.plan.profiles import PlanSpec, uncovered_example
from rsz_export.shapes import BatchRange
from tests.helpers import make_plan

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
PLAN = make_plan(224, 800, profiles=4, batch=BatchRange(1, 2, 4))


def test_profile_shapes_follow_engine_order_with_nchw_rank_and_batch():
    shapes = ts.trt_profile_shapes(PLAN, (2, 0))
    assert [s[0] for s in shapes] == ["images", "images"]
    assert shapes[0][1:] == (PLAN.profiles[2].min.nchw, PLAN.profiles[2].opt.nchw, PLAN.profiles[2].max.nchw)
    assert shapes[1][3] == PLAN.profiles[0].max.nchw
    for _, lo, opt, hi in shapes:
        assert len(lo) == len(opt) == len(hi) == 4 and lo[1] == opt[1] == hi[1] == 3
        assert (lo[0], opt[0], hi[0]) == (1, 2, 4)


def test_profile_shapes_reject_bad_indices_and_empty_engines():
    with pytest.raises(UsageError, match="plan profile 7 does not exist"):
        ts.trt_profile_shapes(PLAN, (7,))
    with pytest.raises(UsageError, match="at least one profile"):
        ts.trt_profile_shapes(PLAN, ())


@settings(max_examples=60, deadline=None)
@given(
    lo=st.integers(32, 600),
    span=st.integers(0, 900),
    count=st.integers(1, 6),
    aspect=st.sampled_from(["free", "square"]),
    per_profile=st.booleans(),
)
def test_translation_is_ordered_and_covers_the_plan(lo, span, count, aspect, per_profile):
    hi = min(lo + span, 4096)
    count = min(count, PlanSpec(lo, hi).profile_limit)
    plan = make_plan(lo, hi, profiles=count, aspect=aspect)
    groups = ts.engine_groups(plan, per_profile)
    assert sorted(i for g in groups for i in g) == list(range(len(plan.profiles)))
    for group in groups:
        for k, (_, mn, opt, mx) in enumerate(ts.trt_profile_shapes(plan, group)):
            assert all(a <= b <= c for a, b, c in zip(mn, opt, mx, strict=True))
            assert (mn[2], mx[2]) == (plan.profiles[group[k]].min.h, plan.profiles[group[k]].max.h)
    if aspect == "free":
        assert uncovered_example(plan) is None


def test_versions_and_major_dispatch():
    assert ts.parse_version("10.13.3.9") == (10, 13, 3, 9)
    assert ts.parse_version("11.0.0b1") == (11, 0, 0) and ts.parse_version("10.8.post1") == (10, 8)
    with pytest.raises(EnvironmentProblem, match="cannot read the TensorRT version"):
        ts.parse_version("dev")
    assert ts.api_major("10.16.1.11") == 10 and ts.api_major("11.4.0.106") == 11
    for bad in ("10.0.1", "8.6.1", "12.0.0"):
        with pytest.raises(EnvironmentProblem, match=f"TensorRT {bad} is not supported"):
            ts.api_major(bad)
    assert ts.precision_path(10, "fp16") == "builder-flags"
    assert ts.precision_path(11, "bf16") == "reduced-precision-onnx"
    assert ts.precision_path(11, "fp32") == ts.precision_path(10, "tf32") == "fp32-onnx"


@pytest.mark.parametrize(
    "options, message",
    [
        (BuildOptions(precision="int4"), "precision 'int4'"),
        (BuildOptions(precision="tf32", tf32=False), "contradicts --no-tf32"),
        (BuildOptions(opt_level=6), "--opt-level 6"),
        (BuildOptions(workspace_mib=0), "--workspace-mib 0"),
        (BuildOptions(hardware_compat="turing+"), "--hardware-compat 'turing+'"),
    ],
)
def test_bad_build_options_are_usage_errors(options, message):
    with pytest.raises(UsageError) as err:
        ts.check_build_options(options, "10.16.1.11")
    assert message in err.value.message


def test_same_compute_capability_needs_10_9():
    options = BuildOptions(hardware_compat="same-compute-capability")
    ts.check_build_options(options, "10.9.0.34")
    with pytest.raises(EnvironmentProblem, match="needs TensorRT >= 10.9"):
        ts.check_build_options(options, "10.3.0.30")


INSPECTOR_10 = {
    "Layers": [
        {
            "Name": "conv1",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "images", "Format/Datatype": "Row major linear FP32"}],
            "Outputs": [{"Name": "c1", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
        },
        {
            "Name": "pool",
            "LayerType": "CaskPooling",
            "Outputs": [{"Name": "p", "Format/Datatype": "Row major linear Half"}],
        },
        {
            "Name": "fc",
            "LayerType": "CaskGemm",
            "Outputs": [{"Name": "logits", "Format/Datatype": "Row major linear FP32"}],
        },
    ],
    "Bindings": ["images", "logits"],
}
INSPECTOR_11 = {
    "Layers": [
        {
            "Name": "conv1",
            "LayerType": "CaskConvolution",
            "Outputs": [{"Name": "c1", "Format": "Channel major (kHWC8)", "DataType": "BF16"}],
        },
        {
            "Name": "fc",
            "LayerType": "CaskGemm",
            "Outputs": [{"Name": "logits", "Format": "Row major linear", "DataType": "Float"}],
        },
    ],
    "I/O Tensors": [
        {
            "Name": "images",
            "IOMode": "Input",
            "DataType": "Float",
            "Dimensions": [-1, 3, -1, -1],
            "ProfileInfo": [{"MinShape": [1, 3, 224, 224], "OptShape": [1, 3, 256, 256], "MaxShape": [1, 3, 288, 288]}],
        },
        {"Name": "logits", "IOMode": "Output", "DataType": "Float", "Dimensions": [-1, 1000]},
    ],
}


def test_inspector_json_schema_10():
    summary = ts.parse_inspector_json(json.dumps(INSPECTOR_10))
    assert summary.schema == "10" and summary.layers == 3 and summary.io_tensors == ("images", "logits")
    assert summary.precisions == {"FP16": 2, "FP32": 1}
    assert summary.layer_types["CaskConvolution"] == 1


def test_inspector_json_schema_11():
    summary = ts.parse_inspector_json(json.dumps(INSPECTOR_11))
    assert summary.schema == "11" and summary.layers == 2 and summary.io_tensors == ("images", "logits")
    assert summary.precisions == {"BF16": 1, "FP32": 1}


@pytest.mark.parametrize(
    "text", ["", "not json", "[1, 2]", json.dumps({"Layers": "x"}), json.dumps({"Layers": ["a", 3]})]
)
def test_inspector_json_never_raises_on_odd_content(text):
    summary = ts.parse_inspector_json(text)
    assert summary.schema == "unknown" and summary.precisions == {}


def test_inspector_layers_without_a_readable_type():
    layers = [{"LayerType": "Shuffle", "Outputs": ["not a dict"]}, {"LayerType": "Cast", "Outputs": [{"Format": "?"}]}]
    summary = ts.parse_inspector_json(json.dumps({"Layers": layers, "Bindings": ["images", "logits"]}))
    assert summary.layers == 2 and summary.precisions == {}


def test_layer_names_only_inspector_output():
    summary = ts.parse_inspector_json(json.dumps({"Layers": ["conv1", "fc"], "Bindings": ["images", "logits"]}))
    assert summary.layers == 2 and summary.layer_types == {"name-only": 2}


def test_parser_errors_list_node_operator_and_description():
    errors = [
        ts.ParserErrorInfo("ErrorCode.UNSUPPORTED_NODE", "No importer registered for op: Foo", 17, "node_Foo_3", "Foo"),
        ts.ParserErrorInfo("ErrorCode.INVALID_GRAPH", "graph has no outputs"),
    ]
    text = ts.format_parser_errors("model.onnx", errors)
    assert text.splitlines() == [
        "TensorRT could not parse model.onnx (2 errors):",
        "  - node 17 'node_Foo_3' (Foo): UNSUPPORTED_NODE: No importer registered for op: Foo",
        "  - graph: INVALID_GRAPH: graph has no outputs",
    ]
    assert "reported no error" in ts.format_parser_errors("m.onnx", [])


def test_timing_cache_stats():
    first = ts.timing_cache_stats("t.cache", b"", b"abc", 0, 120)
    assert first["reused"] is False and first["changed"] is True and first["new_entries"] == 120
    again = ts.timing_cache_stats("t.cache", b"abc", b"abc", 120, 120)
    assert again["reused"] is True and again["changed"] is False and again["new_entries"] == 0
    assert again["sha256"] == again["loaded_sha256"]
    assert "new_entries" not in ts.timing_cache_stats("t.cache", b"", b"x", None, None)


def test_torch_dtype_names():
    assert ts.torch_dtype_name("DataType.FLOAT") == "float32"
    assert ts.torch_dtype_name("HALF") == "float16"
    with pytest.raises(EnvironmentProblem, match="FP4"):
        ts.torch_dtype_name("DataType.FP4")


BUILT = {"tensorrt_version": "10.16.1.11", "gpu_name": "NVIDIA A10", "compute_capability": "8.6"}


@pytest.mark.parametrize(
    "settings_update, here_update, expected",
    [
        ({}, {}, None),
        ({}, {"tensorrt_version": "10.13.3.9"}, "built by TensorRT 10.16.1.11 and this machine has 10.13.3.9"),
        ({"version_compat": True}, {"tensorrt_version": "11.4.0.106"}, None),
        ({"version_compat": True}, {"tensorrt_version": "10.13.3.9"}, "which 10.13.3.9 cannot load"),
        ({}, {"gpu_name": "NVIDIA A40"}, "built on a NVIDIA A10 and this GPU is a NVIDIA A40"),
        ({"hardware_compat": "same-compute-capability"}, {"gpu_name": "NVIDIA A40"}, None),
        ({"hardware_compat": "same-compute-capability"}, {"compute_capability": "8.9"}, "compute capability 8.6"),
        ({"hardware_compat": "ampere+"}, {"gpu_name": "NVIDIA H100", "compute_capability": "9.0"}, None),
        ({"hardware_compat": "ampere+"}, {"gpu_name": "Tesla T4", "compute_capability": "7.5"}, "Ampere or newer"),
    ],
)
def test_compatibility_rules(settings_update, here_update, expected):
    problem = ts.compatibility_problem({**BUILT, **settings_update}, {**BUILT, **here_update})
    if expected is None:
        assert problem is None
    else:
        assert expected in problem and problem.startswith("this engine cannot run here")


def _manifest(settings: dict) -> tuple[Manifest, EngineRecord]:
    engine = EngineRecord(
        "tensorrt-fp32",
        "tensorrt",
        "fp32",
        FileRecord("tensorrt-fp32.engine", "0" * 64, 1),
        (0, 1, 2, 3),
        1.0,
        settings,
    )
    manifest = Manifest(
        "0",
        "rsz-export build",
        "2025-01-01T00:00:00Z",
        {},
        {},
        FileRecord("model.onnx", "0" * 64, 1),
        WeightsRecord("random", "0" * 64, "seeded", 0),
        "tensorrt",
        "fp32",
        PLAN,
        (engine,),
        "k",
    )
    return manifest, engine


def test_check_compatible_on_fabricated_manifests(monkeypatch):
    monkeypatch.setattr(trt_env, "unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_env, "installed", lambda: {**BUILT, "gpu_name": "NVIDIA L4", "compute_capability": "8.9"})
    assert "compute capability 8.6 and this GPU has 8.9" in trt_backend.check_compatible(*_manifest(dict(BUILT)))
    assert trt_backend.check_compatible(*_manifest({**BUILT, "hardware_compat": "ampere+"})) is None
    assert "lacks gpu_name" in trt_backend.check_compatible(*_manifest({"tensorrt_version": "10.16.1.11"}))


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here, so it is not unavailable")
def test_without_tensorrt_the_backend_says_what_to_install():
    reason = trt_backend.unavailable_reason()
    assert 'pip install "rsz-export[tensorrt]"' in reason and "pypi.nvidia.com" in reason
    assert trt_backend.check_compatible(*_manifest(dict(BUILT))) == reason
    with pytest.raises(EnvironmentProblem) as err:
        require_backend("tensorrt")
    assert err.value.exit_code == EXIT_ENVIRONMENT == 3 and "rsz-export[tensorrt]" in str(err.value)


def test_unavailable_messages():
    assert "cannot be imported (No module named 'tensorrt')" in ts.unavailable_message(
        "No module named 'tensorrt'", None, None
    )
    assert "TensorRT 8.6.1 is not supported" in ts.unavailable_message(None, "8.6.1", None)
    assert "no CUDA GPU is usable (no driver)" in ts.unavailable_message(None, "10.16.1.11", "no driver")
    assert ts.unavailable_message(None, "11.4.0.106", None) is None


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here, so build would not stop for its absence")
def test_cli_build_with_tensorrt_backend_exits_3(tmp_path):
    from click.testing import CliRunner

    from rsz_export.cli import main

    result = CliRunner().invoke(
        main,
        [
            "build",
            str(tmp_path / "out"),
            "--backend",
            "tensorrt",
            "--min",
            "224",
            "--max",
            "288",
            "--weights",
            "random",
        ],
    )
    assert result.exit_code == 3, result.output
    assert "rsz-export[tensorrt]" in result.output


def test_timing_cache_problem_names_the_version_or_the_gpu():
    here = {"tensorrt_version": "11.4.0.106", "gpu_name": "NVIDIA L4", "compute_capability": "8.9"}
    assert ts.timing_cache_problem(dict(here), here) is None
    assert "written by TensorRT 10.16.1.11 and this machine has 11.4.0.106" in ts.timing_cache_problem(
        {**here, "tensorrt_version": "10.16.1.11"}, here
    )
    assert "made on a NVIDIA A10 (sm 8.6) and this GPU is a NVIDIA L4" in ts.timing_cache_problem(
        {**here, "gpu_name": "NVIDIA A10", "compute_capability": "8.6"}, here
    )
