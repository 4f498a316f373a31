"""INetworkDefinition, ITensor, OnnxParser and ParserError, filled from a real ONNX file with the ``onnx`` package."""

from __future__ import annotations

import os

from ._core import check_logger, internal, log, raise_no_constructor

# Operators the ONNX parser imports natively: the "Y" rows of onnx-tensorrt docs/operators.md (release 10.1 GA,
# github.com/onnx/onnx-tensorrt). Dispatch is by op_type alone (ModelImporter.cpp parseNode): anything else goes
# to FallbackPluginImporter, which fails with "Plugin not found, are the plugin name, version, and namespace
# correct?" (onnxOpImporters.cpp) and ErrorCode UNSUPPORTED_NODE unless a plugin of that name is registered.
SUPPORTED_OPS = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
    Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max
    MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
    Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
    ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
    Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor""".split()
)
# onnx TensorProto elem types -> TensorRT DataType member names (pyFoundationalTypes.cpp DataType; the parser
# imports these types, onnx-tensorrt docs/operators.md "supports the following ONNX data types").
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 16: "BF16", 6: "INT32", 7: "INT64", 3: "INT8", 2: "UINT8", 9: "BOOL"}


class ITensor:
    __init__ = raise_no_constructor
    name = property(lambda self: self._name)
    shape = property(lambda self: self._shape)  # -1 on dynamic dims
    dtype = property(lambda self: self._dtype)


class INetworkDefinition:
    """Created by Builder.create_network; filled by OnnxParser."""

    __init__ = raise_no_constructor
    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, index: int):
        return self._inputs[index] if 0 <= index < len(self._inputs) else None  # C++ returns nullptr out of range

    def get_output(self, index: int):
        return self._outputs[index] if 0 <= index < len(self._outputs) else None


class ParserError:
    """trt.ParserError: every accessor is a method (python/src/parsers/pyOnnx.cpp)."""

    __init__ = raise_no_constructor

    def code(self):
        return self._code

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def node_name(self):
        return self._node_name

    def node_operator(self):
        return self._node_operator

    def file(self):
        return "ModelImporter.cpp"

    def line(self):
        return 0

    def func(self):
        return "parseNode"

    def local_function_stack(self):
        return []

    def local_function_stack_size(self):
        return 0

    def __str__(self):
        return (
            f"In node {self._node} with name: {self._node_name} and operator: {self._node_operator} "
            f"({self.func()}): {self._code.name}: {self._desc}"
        )


class OnnxParser:
    def __init__(self, network, logger):
        world = self._world
        check_logger(world, logger, "OnnxParser.__init__")
        if not isinstance(network, world.classes["INetworkDefinition"]):
            raise TypeError(
                "OnnxParser.__init__(): incompatible function arguments: network must be INetworkDefinition"
            )
        self._network, self._logger, self._errors = network, logger, []

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index: int):
        return self._errors[index] if 0 <= index < len(self._errors) else None

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        if not isinstance(model, str):
            raise TypeError("parse_from_file(): incompatible function arguments: model must be str")
        try:
            proto = onnx.load(model)  # external data is read relative to the file, as the real parser does
        except Exception as exc:  # noqa: BLE001 - any unreadable file is MODEL_DESERIALIZE_FAILED
            return self._fail("MODEL_DESERIALIZE_FAILED", f"Failed to parse ONNX model from file: {model}: {exc}")
        return self._import(proto)

    def parse(self, model, path: str | None = None) -> bool:
        import onnx

        from ._core import buffer_bytes

        data = buffer_bytes(model, "OnnxParser.parse")
        try:
            proto = onnx.load_from_string(data)
            if path is not None:
                onnx.external_data_helper.load_external_data_for_model(proto, os.path.dirname(path))
        except Exception as exc:  # noqa: BLE001
            return self._fail("MODEL_DESERIALIZE_FAILED", f"Failed to parse ONNX model: {exc}")
        return self._import(proto)

    # -- internals -------------------------------------------------------------------------------------------
    def _fail(self, code: str, desc: str, node: int = -1, name: str = "", op: str = "") -> bool:
        world = self._world
        error = internal(
            world.classes["ParserError"],
            _code=getattr(world.classes["ErrorCode"], code),
            _desc=desc,
            _node=node,
            _node_name=name,
            _node_operator=op,
        )
        self._errors.append(error)
        log(world, self._logger, "ERROR", str(error))
        return False

    def _import(self, proto) -> bool:
        world, network = self._world, self._network
        initializers = {t.name for t in proto.graph.initializer}
        network._inputs = [self._tensor(v) for v in proto.graph.input if v.name not in initializers]
        for index, node in enumerate(proto.graph.node):
            if node.op_type not in SUPPORTED_OPS:
                log(
                    world,
                    self._logger,
                    "INFO",
                    f"No importer registered for op: {node.op_type}. Attempting to import as plugin.",
                )
                return self._fail(
                    "UNSUPPORTED_NODE",
                    "Plugin not found, are the plugin name, version, and namespace correct?",
                    index,
                    node.name,
                    node.op_type,
                )
        for value in list(proto.graph.input) + list(proto.graph.output):
            if value.type.tensor_type.elem_type not in ONNX_TO_TRT:
                return self._fail("UNSUPPORTED_NODE_DATATYPE", f"tensor {value.name} has an unsupported data type")
        network._outputs = [self._tensor(v) for v in proto.graph.output]
        network._onnx = proto.SerializeToString()
        return True

    def _tensor(self, value):
        world = self._world
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        dtype_name = ONNX_TO_TRT.get(value.type.tensor_type.elem_type, "FLOAT")
        return internal(
            world.classes["ITensor"],
            _name=value.name,
            _shape=world.classes["Dims"](dims),
            _dtype=getattr(world.classes["DataType"], dtype_name),
        )
