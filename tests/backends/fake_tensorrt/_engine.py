"""ICudaEngine and EngineInspector: IO tensors, memory per profile, profile shapes, inspector JSON per version,
execution contexts, and the real outputs that ONNX Runtime (CPU) computes from the ONNX carried in the plan."""

from __future__ import annotations

import json

import numpy as np

from ._core import World, internal, log, raise_no_constructor


class ICudaEngine:
    __init__ = raise_no_constructor

    # -- IO tensors (NvInferRuntime.h ICudaEngine::getNbIOTensors / getIOTensorName / getTensorIOMode ...) --
    def _io(self):
        return [(n, "INPUT", t, s) for n, t, s in self._header["inputs"]] + [
            (n, "OUTPUT", t, s) for n, t, s in self._header["outputs"]
        ]

    def _find(self, name):
        return next((io for io in self._io() if io[0] == name), None)

    num_io_tensors = property(lambda self: len(self._io()))
    num_optimization_profiles = property(lambda self: len(self._header["profiles"]))
    num_layers = property(lambda self: len(self._header["layers"]))

    def get_tensor_name(self, index: int):
        io = self._io()
        return io[index][0] if 0 <= index < len(io) else None  # getIOTensorName: nullptr out of range

    def get_tensor_mode(self, name: str):
        modes = self._world.classes["TensorIOMode"]
        io = self._find(name)
        return modes.NONE if io is None else getattr(modes, io[1])  # kNONE for a name that is no IO tensor

    def get_tensor_dtype(self, name: str):
        io = self._find(name)
        return getattr(self._world.classes["DataType"], io[2] if io else "FLOAT")

    def get_tensor_shape(self, name: str):
        io = self._find(name)
        Dims = self._world.classes["Dims"]
        return Dims(io[3]) if io else Dims._invalid()

    # -- memory ---------------------------------------------------------------------------------------------
    @property
    def device_memory_size_v2(self) -> int:
        return max(self._header["device_memory"])  # STATIC contexts need the max over all profiles

    def get_device_memory_size_for_profile_v2(self, profile_index: int) -> int:
        sizes = self._header["device_memory"]
        if not 0 <= profile_index < len(sizes):
            log(self._world, self._logger, "ERROR", f"getDeviceMemorySizeForProfileV2: invalid profile {profile_index}")
            return 0
        return sizes[profile_index]

    # 10.x also has the V1 names (removed in 11, TENSORRT.md section 1 item 7); the surface filter hides them on 11.
    device_memory_size = device_memory_size_v2

    def get_device_memory_size_for_profile(self, profile_index: int) -> int:
        return self.get_device_memory_size_for_profile_v2(profile_index)

    # -- profiles ---------------------------------------------------------------------------------------------
    def get_tensor_profile_shape(self, name: str, profile_index: int):
        """[min, opt, max] Dims. NvInferRuntime.h getProfileShape: "If the profileIndex is invalid or provided name
        does not map to an input tensor, return Dims{-1, {}}" - three invalid Dims through 11.1; from 11.2 the
        binding raises instead (TENSORRT.md section 1 item 12)."""
        world = self._world
        io = self._find(name)
        profiles = self._header["profiles"]
        ok = (
            io is not None
            and io[1] == "INPUT"
            and 0 <= profile_index < len(profiles)
            and name in profiles[profile_index]
        )
        if ok:
            return [world.classes["Dims"](d) for d in profiles[profile_index][name]]
        if world.at_least(11, 2):
            raise RuntimeError(
                f"Could not get profile shape for tensor '{name}'. Is the tensor name an input and "
                "the profile index valid?"
            )
        return [world.classes["Dims"]._invalid() for _ in range(3)]

    # -- inspector and contexts -----------------------------------------------------------------------------------
    def create_engine_inspector(self):
        return internal(self._world.classes["EngineInspector"], _engine=self, execution_context=None)

    def create_execution_context(self, strategy=None):
        """IExecutionContext, or None when its device memory cannot be allocated. STATIC (the default) allocates
        the max over all profiles now, ON_PROFILE_CHANGE the selected profile's size (profile 0 now),
        USER_MANAGED nothing (NvInferRuntime.h ExecutionContextAllocationStrategy). A new context is on profile 0
        (createExecutionContext: "The newly created execution context will be assigned optimization profile 0")."""
        world = self._world
        strategies = world.classes["ExecutionContextAllocationStrategy"]
        strategy = strategies.STATIC if strategy is None else strategy
        if not isinstance(strategy, strategies):
            raise TypeError("create_execution_context(): incompatible function arguments")
        context = internal(
            world.classes["IExecutionContext"],
            _engine=self,
            _strategy=strategy.name,
            _profile=0,
            _shapes={},
            _addresses={},
            _memory=None,
        )
        needed = {"STATIC": self.device_memory_size_v2, "ON_PROFILE_CHANGE": self._header["device_memory"][0]}.get(
            strategy.name
        )
        if needed is not None and not context._allocate(needed):
            return None
        return context

    def _run(self, feeds: dict) -> dict:
        """Outputs for ``feeds``, computed by ONNX Runtime on the CPU from the carried ONNX."""
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(_cpu_runnable(self._onnx), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(None, feeds)))

    def _output_shapes(self, input_shapes: dict) -> dict:
        """Output shapes for concrete input shapes, by ONNX shape inference (-1 where data-dependent)."""
        key = tuple(sorted((k, tuple(v)) for k, v in input_shapes.items()))
        if key not in self._shape_cache:
            import onnx

            model = onnx.load_from_string(self._onnx)
            for value in model.graph.input:
                if value.name in input_shapes:
                    for dim, size in zip(value.type.tensor_type.shape.dim, input_shapes[value.name]):
                        dim.Clear()
                        dim.dim_value = int(size)
            inferred = onnx.shape_inference.infer_shapes(model)
            self._shape_cache[key] = {
                v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                for v in inferred.graph.output
            }
        return self._shape_cache[key]


def _cpu_runnable(onnx_bytes: bytes) -> bytes:
    """ONNX Runtime's CPU provider has no bfloat16 Conv/Gemm: widen bf16 weights to fp32 (exact) and retype bf16
    tensors and casts to fp32. Reduced-precision numerics are not reproduced either way (see REPORT.md)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    if not any(t.data_type == TensorProto.BFLOAT16 for t in model.graph.initializer):
        return onnx_bytes
    for init in model.graph.initializer:
        if init.data_type == TensorProto.BFLOAT16:
            bits = np.frombuffer(init.raw_data, dtype=np.uint16).reshape(tuple(init.dims))
            init.CopyFrom(numpy_helper.from_array((bits.astype(np.uint32) << 16).view(np.float32), init.name))
    for info in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if info.type.tensor_type.elem_type == TensorProto.BFLOAT16:
            info.type.tensor_type.elem_type = TensorProto.FLOAT
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.BFLOAT16:
                attr.i = TensorProto.FLOAT
    return model.SerializeToString()


class EngineInspector:
    __init__ = raise_no_constructor

    def get_engine_information(self, format):  # noqa: A002
        """JSON in the version's schema (TENSORRT.md section 1 item 11): 10.x lists IO names under "Bindings" and
        a combined "Format/Datatype" per tensor; 11.x lists "I/O Tensors" objects and splits Format and DataType.
        With ProfilingVerbosity LAYER_NAMES_ONLY (the default) layers are names only."""
        world = self._world
        fmt = world.classes["LayerInformationFormat"]
        if not isinstance(format, fmt):
            raise TypeError("get_engine_information(): incompatible function arguments")
        header = self._engine._header
        if format == fmt.ONELINE:
            return "\n".join(layer["Name"] for layer in header["layers"])
        detailed = header["verbosity"] == "DETAILED"
        layers = [_layer_json(world, layer) if detailed else layer["Name"] for layer in header["layers"]]
        if world.major >= 11:
            io = [_io_json(self._engine, name, mode) for name, mode, _, _ in self._engine._io()]
            return json.dumps({"Layers": layers, "I/O Tensors": io})
        return json.dumps({"Layers": layers, "Bindings": [name for name, *_ in self._engine._io()]})


def _layer_json(world: World, layer: dict) -> dict:
    out = {"Name": layer["Name"], "LayerType": layer["LayerType"], "Inputs": [{"Name": n} for n in layer["Inputs"]]}
    if world.major >= 11:
        out["Outputs"] = [
            {"Name": o["Name"], "Format": "Row major linear", "DataType": o["DataType"]} for o in layer["Outputs"]
        ]
    else:
        out["Outputs"] = [
            {"Name": o["Name"], "Format/Datatype": f"Row major linear {o['DataType']}"} for o in layer["Outputs"]
        ]
    return out


def _io_json(engine, name: str, mode: str) -> dict:
    _, _, dtype, shape = engine._find(name)
    info = {
        "Name": name,
        "IOMode": mode.title(),
        "DataType": dtype,
        "Dimensions": shape,
        "Location": "Device",
        "IsShapeInferenceIO": False,
    }
    if mode == "INPUT":
        info["ProfileInfo"] = [
            {"MinShape": p[name][0], "OptShape": p[name][1], "MaxShape": p[name][2], "Format": "Row major linear"}
            for p in engine._header["profiles"]
            if name in p
        ]
    return info
