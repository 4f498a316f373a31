"""INetworkDefinition, ITensor, OnnxParser and ParserError, filled from a real ONNX file with the ``onnx`` package."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._core import check_logger, internal, log, raise_no_constructor

# The ONNX parser's published support matrix: the operators it imports natively and the types of their data
# (first) input, per TensorRT major (tests/data/onnx-tensorrt-operators.json, with its sources: onnx-tensorrt
# docs/operators.md of 10.1 GA, and what 11.x changes). Dispatch is by op_type alone (ModelImporter.cpp
# parseNode): anything else goes to FallbackPluginImporter, which fails with "Plugin not found, are the plugin
# name, version, and namespace correct?" (onnxOpImporters.cpp) and ErrorCode UNSUPPORTED_NODE unless a plugin
# of that name is registered.
_MATRIX = json.loads((Path(__file__).resolve().parents[2] / "data" / "onnx-tensorrt-operators.json").read_text())
SUPPORTED_OPS = frozenset(_MATRIX["operators_10"])


def supported_types(major: int) -> dict[str, frozenset[str]]:
    """op type -> the data input types the parser of TensorRT ``major`` accepts (the support matrix)."""
    table = {op: frozenset(types) for op, types in _MATRIX["operators_10"].items()}
    if major >= 11:
        table.update({op: frozenset(t) for op, t in _MATRIX["changes_11"].items() if op != "source"})
    return table


# onnx TensorProto elem types -> the support matrix's type names (onnx.TensorProto.DataType numbers). DOUBLE is
# cast down to FLOAT by the parser (operators.md: "TensorRT will attempt to cast DOUBLE down to FLOAT").
MATRIX_TYPE = {1: "FP32", 11: "FP32", 10: "FP16", 16: "BF16", 6: "INT32", 7: "INT64", 3: "INT8", 2: "UINT8",
               9: "BOOL", 17: "FP8", 22: "INT4", 23: "FP4"}
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
        # ModelImporter.cpp importModel/parseGraph: nodes are imported in topological order (toposort.hpp), so a
        # graph whose node list is not sorted imports; a cycle or a missing input is "Failed to sort the model
        # topologically." (INVALID_GRAPH).
        order = _toposort(proto.graph)
        if order is None:
            return self._fail("INVALID_GRAPH", "Failed to sort the model topologically.")
        nodes = [proto.graph.node[i] for i in order]
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        problem = self._unsupported_type(proto)
        if problem is not None:
            return self._fail("UNSUPPORTED_NODE_DATATYPE", *problem)
        network._outputs = [self._tensor(v) for v in proto.graph.output]
        network._onnx = proto.SerializeToString()
        return True

    def _unsupported_type(self, proto):
        """(desc, index, name, op) for the first node whose data input has a type the support matrix does not
        list for the op on this TensorRT major (operators.md "Supported Types"), else None."""
        import onnx

        types = {t.name: t.data_type for t in proto.graph.initializer}
        inferred = onnx.shape_inference.infer_shapes(proto)
        for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
            types.setdefault(value.name, value.type.tensor_type.elem_type)
        table = supported_types(int(self._world.surface.version.split(".")[0]))
        for index, node in enumerate(proto.graph.node):
            if not node.input or not node.input[0] or node.input[0] not in types:
                continue
            kind = MATRIX_TYPE.get(types[node.input[0]], f"ONNX type {types[node.input[0]]}")
            if kind not in table[node.op_type]:
                allowed = ", ".join(sorted(table[node.op_type]))
                desc = f"{node.op_type} input {node.input[0]!r} is {kind}; the parser supports {allowed}"
                return desc, index, node.name, node.op_type
        return None

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


def _toposort(graph) -> list[int] | None:
    """Indices of ``graph``'s nodes in a topological order (stable: the file's order where it is one), or None
    when a node's input is produced by no node, initializer or graph input, or the nodes form a cycle."""
    available = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {""}
    pending, order = list(range(len(graph.node))), []
    while pending:
        ready = [i for i in pending if all(name in available for name in graph.node[i].input)]
        if not ready:
            return None
        for i in ready:
            available.update(graph.node[i].output)
            order.append(i)
        done = set(ready)
        pending = [i for i in pending if i not in done]
    return order
