"""Tests of the TensorRT test double (tests/backends/fake_tensorrt) itself: every rule it enforces is shown
failing when violated, so the backend tests that run against it rest on checked behaviour."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.backends import fake_tensorrt
from tests.backends.fake_tensorrt.testing import recording_logger, tiny_classifier_onnx

V10, V11 = "10.16.1.11", "11.4.0.106"
BOTH = pytest.mark.parametrize("version", [V10, V11])
PROFILE = ((1, 3, 32, 32), (2, 3, 48, 48), (4, 3, 64, 64))


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return tiny_classifier_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


def network_for(trt, onnx_path, flags=0):
    logger = recording_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path))
    return logger, builder, network


def build(trt, onnx_path, profiles=(PROFILE,), configure=None, flags=0):
    logger, builder, network = network_for(trt, onnx_path, flags)
    config = builder.create_builder_config()
    for lo, opt, hi in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape("images", lo, opt, hi)
        assert config.add_optimization_profile(profile) >= 0
    if configure:
        configure(config, builder)
    return builder.build_serialized_network(network, config), logger, config


def engine_for(trt, onnx_path, **kwargs):
    plan, logger, _ = build(trt, onnx_path, **kwargs)
    assert plan is not None, logger.errors()
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    assert engine is not None, logger.errors()
    return engine, logger


# -- names and enum values come from the version's surface ---------------------------------------------------------
def test_names_follow_each_versions_surface():
    t10, t11, t100 = (fake_tensorrt.make_module(v) for v in (V10, V11, "10.0.1"))
    assert int(t10.BuilderFlag.FP16) == 0 and not hasattr(t11.BuilderFlag, "FP16")
    with pytest.raises(AttributeError):
        t11.BuilderFlag.BF16  # noqa: B018
    assert (
        int(t10.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
        and int(t11.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
    )
    assert int(t10.BuilderFlag.VERSION_COMPATIBLE) == 13 and int(t11.BuilderFlag.VERSION_COMPATIBLE) == 12
    assert not hasattr(t11.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert hasattr(t10.ICudaEngine, "device_memory_size") and not hasattr(t11.ICudaEngine, "device_memory_size")
    assert not hasattr(t100.ICudaEngine, "device_memory_size_v2")  # 10.1+
    assert not hasattr(t100.ITimingCache, "queryKeys") and hasattr(t10.ITimingCache, "queryKeys")  # 10.8+
    assert not hasattr(t100.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY")
    assert str(t10.DataType.HALF) == "DataType.HALF" and t10.DataType.HALF.itemsize == 2


@pytest.mark.parametrize("version", fake_tensorrt.known_versions())
def test_every_known_version_assembles(version):
    trt = fake_tensorrt.make_module(version)  # raises if the double implemented a name no surface has
    assert trt.__version__ == version and trt.ILogger.Severity.VERBOSE > trt.ILogger.Severity.INFO


def test_enums_compare_like_pybind11():
    trt = fake_tensorrt.make_module(V10)
    assert trt.ILogger.INTERNAL_ERROR < trt.ILogger.ERROR < trt.ILogger.WARNING < trt.ILogger.INFO
    assert trt.ILogger.ERROR <= 1 and trt.Logger.WARNING == trt.ILogger.WARNING  # py::arithmetic
    assert trt.TensorIOMode.INPUT != 1  # non-arithmetic enums equal only their own members
    with pytest.raises(TypeError):
        trt.TensorIOMode.INPUT < trt.TensorIOMode.OUTPUT  # noqa: B015


def test_classes_tensorrt_creates_have_no_constructor():
    trt = fake_tensorrt.make_module(V10)
    for cls in (trt.ICudaEngine, trt.IExecutionContext, trt.ITimingCache, trt.IBuilderConfig):
        with pytest.raises(TypeError, match="No constructor"):
            cls()


# -- logger ----------------------------------------------------------------------------------------------------------
def test_ilogger_subclass_must_call_base_init():
    trt = fake_tensorrt.make_module(V11)

    class Forgetful(trt.ILogger):
        def __init__(self):
            self.lines = []

        def log(self, severity, msg):
            pass

    with pytest.raises(TypeError, match="must be called when overriding __init__"):
        Forgetful()
    with pytest.raises(TypeError, match="incompatible function arguments"):
        trt.Builder(object())
    assert trt.Builder(trt.Logger(trt.Logger.ERROR))


def test_default_logger_filters_by_min_severity(capsys, onnx_path):
    trt = fake_tensorrt.make_module(V10)
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    assert not trt.OnnxParser(network, logger).parse_from_file("/nonexistent.onnx")
    trt.Logger(trt.Logger.WARNING).log(trt.Logger.INFO, "hidden")
    out = capsys.readouterr().out
    assert "[TRT] [E]" in out and "hidden" not in out


def test_exceptions_in_log_are_printed_and_swallowed(capsys, onnx_path):
    """pyCore.cpp PyLogger::log catches every exception: a KeyboardInterrupt there does not stop a build."""
    trt = fake_tensorrt.make_module(V10)

    class Interrupting(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            raise KeyboardInterrupt

    logger = Interrupting()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(str(onnx_path))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", *PROFILE)
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None
    assert "Exception caught in log(): KeyboardInterrupt" in capsys.readouterr().err


def test_simulated_ctrl_c_is_lost_in_a_callback_unless_a_handler_cancels(onnx_path, capsys):
    trt = fake_tensorrt.make_module(V11)
    trt._fake.knobs.sigint_at_build_step = 2
    plan, _, _ = build(trt, onnx_path)
    assert plan is not None and "KeyboardInterrupt" in capsys.readouterr().err  # default handler: swallowed

    class Cancel(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.stop = False

        def phase_start(self, *args):
            pass

        def step_complete(self, phase, step):
            return not self.stop

        def phase_finish(self, phase):
            pass

    monitor = Cancel()
    previous = signal.signal(signal.SIGINT, lambda *_: setattr(monitor, "stop", True))
    try:
        trt._fake.knobs.sigint_at_build_step = 2

        def attach(config, _builder):
            config.progress_monitor = monitor

        plan, logger, _ = build(trt, onnx_path, configure=attach)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert plan is None and any("cancelled" in e for e in logger.errors())


# -- network creation and parsing ----------------------------------------------------------------------------------
def test_network_typing_per_major(onnx_path):
    t10, t11 = fake_tensorrt.make_module(V10), fake_tensorrt.make_module(V11)
    for trt, flags, strong in (
        (t10, 0, False),
        (t10, 1 << int(t10.NetworkDefinitionCreationFlag.STRONGLY_TYPED), True),
        (t10, 1 << int(t10.NetworkDefinitionCreationFlag.EXPLICIT_BATCH), False),
        (t11, 0, True),
        (t11, 1 << int(t11.NetworkDefinitionCreationFlag.STRONGLY_TYPED), True),
    ):
        assert trt.Builder(trt.Logger()).create_network(flags)._strongly_typed is strong
    logger = recording_logger(t11)
    assert t11.Builder(logger).create_network(1 << 9) is None and logger.errors()


def test_parser_reads_the_real_onnx(onnx_path):
    trt = fake_tensorrt.make_module(V10)
    _, _, network = network_for(trt, onnx_path)
    tensor = network.get_input(0)
    assert (network.num_inputs, network.num_outputs) == (1, 1)
    assert tensor.name == "images" and tuple(tensor.shape) == (-1, 3, -1, -1) and tensor.dtype == trt.DataType.FLOAT
    assert tuple(network.get_output(0).shape) == (-1, 1000)


def test_parser_rejects_com_microsoft_nodes_with_full_error_details(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("FusedConv", ["x", "w"], ["y"], name="fused0", domain="com.microsoft", activation="Relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], [0.0] * 12)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    onnx.save(model, str(tmp_path / "fused.onnx"))
    trt = fake_tensorrt.make_module(V11)
    logger = recording_logger(trt)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert not parser.parse_from_file(str(tmp_path / "fused.onnx"))
    error = parser.get_error(0)
    assert (error.code(), error.node(), error.node_name(), error.node_operator()) == (
        trt.ErrorCode.UNSUPPORTED_NODE,
        0,
        "fused0",
        "FusedConv",
    )
    assert "Plugin not found" in error.desc() and "FusedConv" in str(error)
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    assert not parser.parse_from_file(str(tmp_path / "junk.onnx"))
    assert parser.get_error(1).code() == trt.ErrorCode.MODEL_DESERIALIZE_FAILED


def _qdq_classifier(path, bias_type):
    """A Conv whose weight and bias come through DequantizeLinear (the bias as ``bias_type``), nodes listed in
    reverse order (ONNX Runtime's quantizer writes its DequantizeLinear nodes after their consumers)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Conv", ["x", "w_dq", "b_dq"], ["y"], name="conv"),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b_dq"], name="bias_dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"], name="weight_dq"),
    ]
    init = [
        helper.make_tensor("w_q", TensorProto.INT8, [4, 3, 1, 1], [1] * 12),
        helper.make_tensor("w_s", TensorProto.FLOAT, [], [0.1]),
        helper.make_tensor("w_z", TensorProto.INT8, [], [0]),
        helper.make_tensor("b_q", bias_type, [4], [1] * 4),
        helper.make_tensor("b_s", TensorProto.FLOAT, [], [0.01]),
        helper.make_tensor("b_z", bias_type, [], [0]),
    ]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@BOTH
def test_parser_follows_the_support_matrix_for_input_types(version, tmp_path):
    """onnx-tensorrt docs/operators.md: DequantizeLinear takes INT8/FP8/INT4 (FP4 from 11.x), so an INT32 bias
    DequantizeLinear (ONNX Runtime's default Q/DQ) is refused with the node named; an INT8 one imports, even with
    its nodes out of order (the parser sorts them, ModelImporter.cpp toposort)."""
    from onnx import TensorProto

    trt = fake_tensorrt.make_module(version)
    logger = recording_logger(trt)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert not parser.parse_from_file(str(_qdq_classifier(tmp_path / "int32.onnx", TensorProto.INT32)))
    error = parser.get_error(0)
    assert (error.code(), error.node_name(), error.node_operator()) == (
        trt.ErrorCode.UNSUPPORTED_NODE_DATATYPE, "bias_dq", "DequantizeLinear")
    assert "is INT32" in error.desc() and "INT8" in error.desc()
    network = trt.Builder(logger).create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(
        str(_qdq_classifier(tmp_path / "int8.onnx", TensorProto.INT8))
    )
    assert tuple(network.get_output(0).shape) == (1, 4, 8, 8)


def test_a_graph_that_cannot_be_sorted_is_invalid(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]  # a cycle
    graph = helper.make_graph(nodes, "cycle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    onnx.save(
        helper.make_model(graph),
        str(tmp_path / "cycle.onnx"),
    )
    trt = fake_tensorrt.make_module(V11)
    logger = recording_logger(trt)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert not parser.parse_from_file(str(tmp_path / "cycle.onnx"))
    assert parser.get_error(0).code() == trt.ErrorCode.INVALID_GRAPH and "topologically" in parser.get_error(0).desc()


def test_the_support_matrix_data_names_its_source():
    from tests.backends.fake_tensorrt import _network

    assert "onnx-tensorrt" in _network._MATRIX["source"] and "96e781103cfc" in _network._MATRIX["source"]
    ten, eleven = _network.supported_types(10), _network.supported_types(11)
    assert ten["DequantizeLinear"] == {"INT8", "FP8", "INT4"} and eleven["DequantizeLinear"] >= {"FP4"}
    assert {"Conv", "Gemm", "Add", "Relu", "MaxPool", "GlobalAveragePool", "Flatten"} <= set(ten)


# -- builder config ------------------------------------------------------------------------------------------------
def test_builder_config_contract():
    trt = fake_tensorrt.make_module(V10)
    logger = recording_logger(trt)
    config = trt.Builder(logger).create_builder_config()
    assert config.get_flag(trt.BuilderFlag.TF32) and config.builder_optimization_level == 3
    assert config.profiling_verbosity == trt.ProfilingVerbosity.LAYER_NAMES_ONLY
    with pytest.raises(TypeError):
        config.set_flag(6)  # an int is not a BuilderFlag
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, -1)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 20)
    assert config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) == 1 << 20
    config.builder_optimization_level = -1
    assert config.builder_optimization_level == 3 and logger.errors()
    with pytest.raises(TypeError):
        config.profiling_verbosity = 2
    with pytest.raises(TypeError):
        config.hardware_compatibility_level = "ampere+"
    config.clear_flag(trt.BuilderFlag.TF32)
    config.set_flag(trt.BuilderFlag.FP16)
    assert config.flags == 1 << 0


# -- timing cache --------------------------------------------------------------------------------------------------
def test_timing_cache_loading_rules():
    t10, t11 = fake_tensorrt.make_module(V10), fake_tensorrt.make_module(V11)
    other_gpu = fake_tensorrt.make_module(V10, gpu=fake_tensorrt.FakeGpu("NVIDIA A10", (8, 6)))
    logger = recording_logger(t10)
    config = t10.Builder(logger).create_builder_config()
    blob = bytes(memoryview(config.create_timing_cache(b"").serialize()))
    assert config.create_timing_cache(b"garbage") is None and logger.errors()
    eleven = t11.Builder(t11.Logger()).create_builder_config().create_timing_cache(b"").serialize()
    assert config.create_timing_cache(eleven) is None  # another TensorRT version
    foreign = other_gpu.Builder(other_gpu.Logger()).create_builder_config().create_timing_cache(b"").serialize()
    cache = config.create_timing_cache(foreign)
    assert cache is not None and config.set_timing_cache(cache, False) is False  # another device
    assert config.set_timing_cache(cache, True) is True
    with pytest.raises(TypeError):
        config.set_timing_cache(None, False)  # what an unchecked create_timing_cache result does
    with pytest.raises(TypeError):
        config.set_timing_cache(config.create_timing_cache(blob))  # ignore_mismatch is required


def test_timing_cache_fills_combines_and_level_0_ignores_it(onnx_path):
    trt = fake_tensorrt.make_module(V10)
    caches = {}

    def with_cache(level):
        def configure(config, _builder):
            caches[level] = config.create_timing_cache(b"")
            config.set_timing_cache(caches[level], False)
            config.builder_optimization_level = level

        return configure

    build(trt, onnx_path, configure=with_cache(3))
    build(trt, onnx_path, configure=with_cache(0))
    assert len(caches[3].queryKeys()) == 4 and caches[0].queryKeys() == []
    assert caches[0].combine(caches[3], False) and len(caches[0].queryKeys()) == 4
    other = fake_tensorrt.make_module(V10, gpu=fake_tensorrt.FakeGpu("NVIDIA A10", (8, 6)))
    foreign = (
        trt.Builder(trt.Logger())
        .create_builder_config()
        .create_timing_cache(other.Builder(other.Logger()).create_builder_config().create_timing_cache(b"").serialize())
    )
    assert caches[3].combine(foreign, False) is False and caches[3].combine(foreign, True) is True


# -- optimization profiles and build checks ------------------------------------------------------------------------
def test_profile_set_shape_and_add_rules():
    trt = fake_tensorrt.make_module(V11)
    builder = trt.Builder(recording_logger(trt))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    with pytest.raises(RuntimeError, match="opt is inconsistent"):
        profile.set_shape("images", (1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 128, 128))
    assert not profile and config.add_optimization_profile(profile) == -1  # min stays set alone: invalid
    for bad in [((1, 3, 32), (1, 3, 32, 32), (1, 3, 64, 64)), ((-1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))]:
        with pytest.raises(RuntimeError):
            builder.create_optimization_profile().set_shape("images", *bad)
    good = builder.create_optimization_profile()
    good.set_shape("images", *PROFILE)
    assert config.add_optimization_profile(good) == 0 and config.add_optimization_profile(good) == 1
    assert [tuple(d) for d in good.get_shape("images")] == list(PROFILE) and good.get_shape("other") == []


@pytest.mark.parametrize(
    "profiles, message",
    [
        ((), "no optimization profile"),
        ((((1, 3, 32), (1, 3, 32), (1, 3, 32)),), "rank"),
        ((((1, 4, 32, 32), (1, 4, 32, 32), (1, 4, 32, 32)),), "static dims"),
    ],
)
def test_build_fails_for_profiles_that_do_not_fit_the_network(profiles, message, onnx_path):
    trt = fake_tensorrt.make_module(V10)
    plan, logger, _ = build(trt, onnx_path, profiles=profiles)
    assert plan is None and any(message in e for e in logger.errors())


def test_build_fails_for_small_workspace_and_reduced_flags_on_strong_networks(onnx_path):
    trt = fake_tensorrt.make_module(V10, knobs=fake_tensorrt.Knobs(min_workspace_bytes=64 << 20))

    def small(config, _builder):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 16 << 20)

    plan, logger, _ = build(trt, onnx_path, configure=small)
    assert plan is None and any("insufficient workspace" in e for e in logger.errors())
    trt = fake_tensorrt.make_module(V10)
    strong = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    plan, logger, _ = build(trt, onnx_path, flags=strong, configure=lambda c, _b: c.set_flag(trt.BuilderFlag.FP16))
    assert plan is None and any("strongly typed" in e for e in logger.errors())


def test_progress_monitor_protocol_and_cancellation(onnx_path, capsys):
    trt = fake_tensorrt.make_module(V11)

    class Recorder(trt.IProgressMonitor):
        def __init__(self, stop_at=None, raise_in=None):
            trt.IProgressMonitor.__init__(self)
            self.calls, self.stop_at, self.raise_in = [], stop_at, raise_in

        def phase_start(self, name, parent, steps):
            self.calls.append(("start", name, parent, steps))
            if self.raise_in == "phase_start":
                raise ValueError("boom")

        def step_complete(self, name, step):
            self.calls.append(("step", name, step))
            if self.raise_in == "step_complete":
                raise ValueError("boom")
            return len(self.calls) != self.stop_at

        def phase_finish(self, name):
            self.calls.append(("finish", name))

    def run(monitor):
        def attach(config, _builder):
            config.progress_monitor = monitor

        return build(trt, onnx_path, configure=attach)

    ok = Recorder()
    assert run(ok)[0] is not None
    assert ok.calls[0] == ("start", "Building engine", None, 1) and ok.calls[-1] == ("finish", "Building engine")
    assert ("start", "Optimizing profile 0", "Building engine", 4) in ok.calls
    plan, logger, _ = run(Recorder(stop_at=3))
    assert plan is None and any("cancelled" in e for e in logger.errors())
    assert run(Recorder(raise_in="step_complete"))[0] is None  # an exception in step_complete cancels
    assert run(Recorder(raise_in="phase_start"))[0] is not None  # elsewhere it is printed and ignored
    assert "Exception caught in phase_start()" in capsys.readouterr().err

    class NoInit(trt.IProgressMonitor):
        def __init__(self):
            pass

    with pytest.raises(TypeError, match="must be called"):
        run(NoInit())


# -- the plan, the runtime and compatibility -----------------------------------------------------------------------
def test_plan_carries_onnx_profiles_precision_compat_version_and_gpu(onnx_path):
    from tests.backends.fake_tensorrt import _formats

    trt = fake_tensorrt.make_module(V10)

    def configure(config, _builder):
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS

    plan, _, _ = build(trt, onnx_path, configure=configure)
    header, payload = _formats.unpack(_formats.PLAN_MAGIC, bytes(memoryview(plan)))
    import onnx

    assert onnx.load_from_string(payload).graph.name == "tiny_classifier"  # the parsed ONNX travels in the plan
    assert header["trt"] == V10 and header["device"]["cc"] == [9, 0] and header["version_compatible"]
    assert header["hardware_compat"] == "AMPERE_PLUS" and header["precision_flags"] == ["FP16"]
    assert header["profiles"] == [{"images": [list(s) for s in PROFILE]}]
    assert {o["DataType"] for layer in header["layers"] for o in layer["Outputs"]} == {"FP16"}
    assert plan.nbytes > 0
    with pytest.raises(TypeError):
        len(plan)  # IHostMemory has the buffer protocol, not the sequence protocol


def _plan(version, onnx_path, gpu=None, vc=False, hw=None):
    trt = fake_tensorrt.make_module(version, gpu=gpu)

    def configure(config, _builder):
        if vc:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if hw:
            config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, hw)

    plan, logger, _ = build(trt, onnx_path, configure=configure)
    assert plan is not None, logger.errors()
    return bytes(memoryview(plan))


def _load(version, plan, gpu=None, host_code=False):
    trt = fake_tensorrt.make_module(version, gpu=gpu)
    logger = recording_logger(trt)
    runtime = trt.Runtime(logger)
    runtime.engine_host_code_allowed = host_code
    return runtime.deserialize_cuda_engine(plan), logger


def test_deserialize_refuses_corrupt_and_foreign_version_plans(onnx_path):
    plain10, vc10 = _plan(V10, onnx_path), _plan(V10, onnx_path, vc=True)
    for bad in (b"junk", plain10[:-10], plain10[:40] + b"X" + plain10[41:]):
        engine, logger = _load(V10, bad)
        assert engine is None and logger.errors()
    assert _load(V11, plain10)[0] is None  # plain 10.x plan on 11.x: rebuild
    assert _load(V10, vc10)[0] is None  # version compatible, same version, host code not allowed
    assert _load(V10, vc10, host_code=True)[0] is not None
    assert _load(V11, vc10)[0] is None and _load(V11, vc10, host_code=True)[0] is not None  # 10 -> 11 allowed
    assert _load("10.13.3.9", vc10, host_code=True)[0] is None  # never on an older runtime
    assert _load(V10, _plan(V11, onnx_path, vc=True), host_code=True)[0] is None  # 11 plans never run on 10


def test_deserialize_device_rules(onnx_path):
    a10, t4 = fake_tensorrt.FakeGpu("NVIDIA A10", (8, 6)), fake_tensorrt.FakeGpu("Tesla T4", (7, 5))
    h100_pcie = fake_tensorrt.FakeGpu("NVIDIA H100 PCIe", (9, 0))
    plain, amp = _plan(V11, onnx_path), _plan(V11, onnx_path, hw="AMPERE_PLUS")
    assert _load(V11, plain, gpu=a10)[0] is None  # another compute capability
    engine, logger = _load(V11, plain, gpu=h100_pcie)
    assert engine is not None and any("different models" in m for s, m in logger.messages)  # same sm: a warning
    assert _load(V11, amp, gpu=a10)[0] is not None and _load(V11, amp, gpu=t4)[0] is None
    same_cc = _plan(V11, onnx_path, hw="SAME_COMPUTE_CAPABILITY")
    assert _load(V11, same_cc, gpu=h100_pcie)[0] is not None and _load(V11, same_cc, gpu=a10)[0] is None


@BOTH
def test_engine_io_memory_and_inspector(version, onnx_path):
    trt = fake_tensorrt.make_module(version)
    engine, _ = engine_for(trt, onnx_path, profiles=(PROFILE, ((1, 3, 64, 64), (1, 3, 96, 96), (1, 3, 160, 160))))
    assert engine.num_io_tensors == 2 and [engine.get_tensor_name(i) for i in range(2)] == ["images", "logits"]
    assert engine.get_tensor_mode("images") == trt.TensorIOMode.INPUT
    assert engine.get_tensor_mode("nope") == trt.TensorIOMode.NONE
    assert engine.get_tensor_dtype("logits") == trt.DataType.FLOAT and tuple(engine.get_tensor_shape("images")) == (
        -1,
        3,
        -1,
        -1,
    )
    assert engine.num_optimization_profiles == 2
    per = [engine.get_device_memory_size_for_profile_v2(k) for k in range(2)]
    assert engine.device_memory_size_v2 == max(per) and per[0] != per[1]
    assert [tuple(d) for d in engine.get_tensor_profile_shape("images", 0)] == list(PROFILE)
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    import json

    data = json.loads(info)
    assert ("I/O Tensors" in data) is (version == V11) and ("Bindings" in data) is (version == V10)
    assert data["Layers"] == ["conv", "pool", "flatten", "fc"]  # LAYER_NAMES_ONLY by default


@pytest.mark.parametrize("version, raises", [(V10, False), ("11.0.0.114", False), (V11, True)])
def test_profile_shape_of_a_non_input(version, raises, onnx_path):
    trt = fake_tensorrt.make_module(version)
    engine, _ = engine_for(trt, onnx_path)
    if raises:  # 11.2+
        with pytest.raises(RuntimeError, match="Is the tensor name an input"):
            engine.get_tensor_profile_shape("logits", 0)
        return
    shapes = engine.get_tensor_profile_shape("logits", 0)
    with pytest.raises(ValueError):
        tuple(shapes[0])  # invalid Dims: nbDims == -1


# -- execution contexts --------------------------------------------------------------------------------------------
def test_context_creation_memory_strategies_and_oom(onnx_path):
    trt = fake_tensorrt.make_module(V10)
    engine, logger = engine_for(trt, onnx_path)
    device = trt._fake.device
    S = trt.ExecutionContextAllocationStrategy
    used = device.used_bytes
    ctx = engine.create_execution_context()
    assert ctx.active_optimization_profile == 0 and device.used_bytes - used >= engine.device_memory_size_v2
    assert engine.create_execution_context(S.USER_MANAGED) is not None
    del ctx
    device.total_bytes = device.used_bytes + 1024
    assert engine.create_execution_context(S.STATIC) is None and any(
        "could not be allocated" in e for e in logger.errors()
    )


def test_profile_selection_rules(onnx_path):
    trt = fake_tensorrt.make_module(V11)
    engine, _ = engine_for(trt, onnx_path, profiles=(PROFILE, PROFILE))
    stream = trt._fake.device.create_stream()
    first, second = engine.create_execution_context(), engine.create_execution_context()
    with pytest.raises(RuntimeError, match="Error in set optimization profile async"):
        first.set_optimization_profile_async(2, stream)
    with pytest.raises(RuntimeError):
        first.set_optimization_profile_async(0, 12345)  # not a stream of this device
    assert first.set_optimization_profile_async(0, stream)
    with pytest.raises(RuntimeError):  # NvInferRuntime.h: separate profiles for contexts in concurrent use
        second.set_optimization_profile_async(0, stream)
    assert second.set_optimization_profile_async(1, stream) and second.active_optimization_profile == 1
    trt._fake.knobs.profile_sharing = True
    third = engine.create_execution_context()
    assert third.set_optimization_profile_async(0, stream)


def test_a_profile_switch_is_queued_on_its_stream(onnx_path):
    """Work on another stream fails until the stream carrying the switch is synchronized; the same stream is
    ordered and needs nothing (NvInferRuntime.h setOptimizationProfileAsync)."""
    trt = fake_tensorrt.make_module(V11)
    engine, logger = engine_for(trt, onnx_path, profiles=(PROFILE, PROFILE))
    device = trt._fake.device
    switch, run = device.create_stream(), device.create_stream()
    ctx = engine.create_execution_context()
    ctx.set_optimization_profile_async(1, switch)
    x = np.zeros((1, 3, 32, 32), np.float32)
    ctx.set_input_shape("images", x.shape)
    ctx.set_tensor_address("images", device.malloc(x.nbytes))
    ctx.set_tensor_address("logits", device.malloc(4000))
    assert not ctx.execute_async_v3(run) and "has not finished" in logger.errors()[-1]
    assert ctx.execute_async_v3(switch)  # the same stream: queued after the switch
    device.synchronize(switch)
    assert ctx.execute_async_v3(run)


def test_the_module_has_a_spec_like_an_installed_package(monkeypatch):
    """torch._dynamo (imported by torchvision) calls importlib.util.find_spec("tensorrt"), which raises
    ValueError for a module in sys.modules whose __spec__ is None."""
    import importlib.util

    module = fake_tensorrt.install(monkeypatch, V11)
    spec = importlib.util.find_spec("tensorrt")
    assert spec is module.__spec__ and spec.name == "tensorrt" and spec.origin.endswith("__init__.py")


def _prepared(trt, onnx_path, shape=(2, 3, 40, 56)):
    engine, logger = engine_for(trt, onnx_path)
    device = trt._fake.device
    ctx = engine.create_execution_context()
    stream = device.create_stream()
    ctx.set_optimization_profile_async(0, stream)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    return engine, logger, device, ctx, stream, x


def test_input_shapes_and_output_shapes(onnx_path):
    trt = fake_tensorrt.make_module(V10)
    engine, logger, _, ctx, _, _ = _prepared(trt, onnx_path)
    assert tuple(ctx.get_tensor_shape("logits")) == (-1, 1000)
    assert not ctx.set_input_shape("images", (8, 3, 32, 32))  # batch above the profile max
    assert not ctx.set_input_shape("images", (1, 4, 32, 32))  # channel dim is static 3
    assert not ctx.set_input_shape("logits", (1, 1000)) and len(logger.errors()) == 3
    assert ctx.set_input_shape("images", [3, 3, 50, 40]) and tuple(ctx.get_tensor_shape("logits")) == (3, 1000)


def test_execute_checks_shapes_addresses_and_buffers(onnx_path):
    trt = fake_tensorrt.make_module(V11)
    engine, logger, device, ctx, stream, x = _prepared(trt, onnx_path)
    assert not ctx.execute_async_v3(stream)  # no input shape
    ctx.set_input_shape("images", x.shape)
    assert not ctx.execute_async_v3(stream)  # no addresses
    xin, small = device.malloc(x.nbytes), device.malloc(16)
    assert not ctx.set_tensor_address("images", xin + 4)  # not 256-byte aligned
    ctx.set_tensor_address("images", xin)
    ctx.set_tensor_address("logits", small)
    assert not ctx.execute_async_v3(stream)  # output buffer too small for (2, 1000) floats
    ctx.set_tensor_address("logits", 0x1000_0000_0000)  # an address no allocation holds (a host pointer)
    assert not ctx.execute_async_v3(stream)
    assert all("enqueueV3" in e or "setTensorAddress" in e for e in logger.errors())


def test_outputs_are_real_and_appear_after_synchronize(onnx_path):
    import onnxruntime as ort

    trt = fake_tensorrt.make_module(V10)
    engine, logger, device, ctx, stream, x = _prepared(trt, onnx_path)
    ctx.set_input_shape("images", x.shape)
    xin, yout = device.malloc(x.nbytes), device.malloc(2 * 1000 * 4)
    device.memcpy_htod(xin, x, stream)
    ctx.set_tensor_address("images", xin)
    ctx.set_tensor_address("logits", yout)
    assert ctx.execute_async_v3(stream)
    assert not device.read(yout, (2, 1000), np.float32).any()  # nothing before the stream runs
    device.synchronize(stream)
    expected = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    np.testing.assert_allclose(device.read(yout, (2, 1000), np.float32), expected, rtol=1e-6, atol=1e-6)
    assert not ctx.execute_async_v3(0xDEAD)  # unknown stream
    assert ctx.execute_async_v3(0) and any("default stream" in m for s, m in logger.messages)


# -- device and helpers --------------------------------------------------------------------------------------------
def test_fake_device_memory():
    device = fake_tensorrt.FakeDevice(1 << 20)
    a = device.malloc(100)
    assert a % fake_tensorrt.ALIGNMENT == 0 and device.used_bytes == 100
    with pytest.raises(fake_tensorrt.DeviceError):
        device.view(a, 101)
    with pytest.raises(fake_tensorrt.DeviceError):
        device.malloc(2 << 20)
    device.free(a)
    with pytest.raises(fake_tensorrt.DeviceError):
        device.view(a, 1)


def test_module_functions():
    trt = fake_tensorrt.make_module(V11)
    assert trt.nptype(trt.DataType.HALF) is np.float16 and trt.volume((2, 3, 4)) == 24
    with pytest.raises(TypeError):
        trt.nptype(trt.DataType.BF16)


def test_install_puts_the_double_in_sys_modules(monkeypatch):
    import sys

    module = fake_tensorrt.install(monkeypatch, V11)
    import tensorrt

    assert tensorrt is module is sys.modules["tensorrt"] and tensorrt.__version__ == V11
