"""``serve``'s gRPC front: KServe v2's ``GRPCInferenceService`` in this process, in front of the loopback core.

``ModelInfer`` requests are checked as the HTTP front checks them (``request_check``) and refused with
INVALID_ARGUMENT (NOT_FOUND for another model, RESOURCE_EXHAUSTED over the size limit) and one line; a message
over the largest request the build serves is refused by gRPC from its declared length. Health (``ServerLive``,
``ServerReady``, ``ModelReady``) is answered here from ``Health``; the other unary methods are passed on as they
are. ``ModelStreamInfer`` is not offered (UNIMPLEMENTED). ``stop`` refuses new calls and lets calls in flight end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rsz_export.triton.metrics import ServeMetrics
from rsz_export.triton.request_check import VALUE_BYTES, Refused, RequestLimits, check_header

SERVICE = "/inference.GRPCInferenceService/"
WORKERS = 16
CORE_TIMEOUT_S = 120
STATUS_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 411: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED",
                415: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}  # fmt: skip


def _parameters(proto_map) -> dict:
    return {key: True for key in proto_map}


def header_of(request) -> tuple[dict, int]:
    """A ``ModelInferRequest`` as the HTTP front's JSON header (names, datatypes, shapes, parameter names), and
    the bytes of its raw tensors."""
    inputs = []
    for i, tensor in enumerate(request.inputs):
        entry = {"name": tensor.name, "datatype": tensor.datatype, "shape": [int(d) for d in tensor.shape],
                 "parameters": _parameters(tensor.parameters)}  # fmt: skip
        if i < len(request.raw_input_contents):
            entry["parameters"]["binary_data_size"] = len(request.raw_input_contents[i])
        else:
            entry["data"] = None
        inputs.append(entry)
    outputs = [{"name": o.name, "parameters": _parameters(o.parameters)} for o in request.outputs]
    header = {"inputs": inputs, "outputs": outputs or None, "parameters": _parameters(request.parameters)}
    return header, sum(len(raw) for raw in request.raw_input_contents)


class GrpcFront:
    """The gRPC server on ``address`` (host, port), passing checked calls to the core at ``core_port``."""

    def __init__(self, address: tuple[str, int], limits: RequestLimits, core_port: int,
                 health: Callable[[], tuple[bool, bool]], metrics: ServeMetrics, log: Callable[[str], None]):
        import grpc
        from tritonclient.grpc import service_pb2

        self.grpc, self.pb = grpc, service_pb2
        self.limits, self.health, self.metrics, self.log = limits, health, metrics, log
        unlimited = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{core_port}", options=unlimited)
        self.server = grpc.server(ThreadPoolExecutor(WORKERS, thread_name_prefix="rsz-grpc-front"),
                                  handlers=[_Handler(self)],
                                  options=[("grpc.max_receive_message_length", limits.max_binary_bytes),
                                           ("grpc.so_reuseport", 0)])  # fmt: skip
        host, port = address
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.server.add_insecure_port(target) != port:
            raise OSError(f"cannot listen on {host}:{port}")
        self.server.start()

    def stop(self, grace_s: float) -> None:
        self.server.stop(grace_s).wait(grace_s + 1)
        self.channel.close()

    def forward(self, method: str, request: bytes, context) -> bytes:
        try:
            return self.channel.unary_unary(method)(request, timeout=CORE_TIMEOUT_S)
        except self.grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")

    def refuse(self, context, refused: Refused) -> None:
        self.metrics.refuse(refused.reason)
        self.log(f"refused a request ({refused.status}): {refused.message}")
        context.abort(getattr(self.grpc.StatusCode, STATUS_CODES.get(refused.status, "INVALID_ARGUMENT")),
                      refused.message)

    def infer(self, request: bytes, context) -> bytes:
        try:
            shape = self.check(request)
        except Refused as refused:
            self.refuse(context, refused)
        self.metrics.started()
        try:
            answer = self.forward(SERVICE + "ModelInfer", request, context)
        finally:
            self.metrics.started(-1)
        self.metrics.answered(self.limits.profile_of(shape[2], shape[3]), shape[0])
        return answer

    def check(self, request: bytes) -> tuple[int, ...]:
        from google.protobuf.message import DecodeError

        try:
            parsed = self.pb.ModelInferRequest.FromString(request)
        except (DecodeError, RecursionError):
            raise Refused(400, "malformed", "the request is not a valid ModelInferRequest") from None
        if parsed.model_name != self.limits.name or parsed.model_version not in ("", "1"):
            raise Refused(404, "unknown_model", f"Request for unknown model: {parsed.model_name[:64]!r} version "
                                               f"{parsed.model_version[:16]!r} is not served")  # fmt: skip
        header, raw_bytes = header_of(parsed)
        if len(parsed.raw_input_contents) > len(parsed.inputs):
            raise Refused(400, "size_mismatch", "more raw tensors than inputs")
        tensor, shape = check_header(header, self.limits, raw_bytes)
        if "data" in tensor:
            contents = parsed.inputs[0].contents
            count = len(contents.fp32_contents)
            others = sum(len(getattr(contents, f.name)) for f in contents.DESCRIPTOR.fields) - count
            if others or count != math.prod(shape):
                raise Refused(400, "size_mismatch", f"input 'images': unexpected size: shape {list(shape)} holds "
                                                    f"{math.prod(shape)} FP32 values ({math.prod(shape) * VALUE_BYTES}"
                                                    f" bytes), the request has {count}")  # fmt: skip
        return shape

    def answer_health(self, method: str, request: bytes, context) -> bytes:
        live, ready = self.health()
        if method == "ServerLive":
            return self.pb.ServerLiveResponse(live=live).SerializeToString()
        if method == "ServerReady":
            return self.pb.ServerReadyResponse(ready=ready).SerializeToString()
        asked = self.pb.ModelReadyRequest.FromString(request)
        known = asked.name == self.limits.name and asked.version in ("", "1")
        return self.pb.ModelReadyResponse(ready=known and ready).SerializeToString()


class _Handler:
    """Routes each method of the service (a ``grpc.GenericRpcHandler``): requests and answers stay bytes."""

    def __init__(self, front: GrpcFront):
        self.front = front

    def service(self, details):
        grpc, front = self.front.grpc, self.front
        if not details.method.startswith(SERVICE):
            return None
        name = details.method[len(SERVICE):]
        if name == "ModelInfer":
            return grpc.unary_unary_rpc_method_handler(front.infer)
        if name in ("ServerLive", "ServerReady", "ModelReady"):
            return grpc.unary_unary_rpc_method_handler(lambda request, context: front.answer_health(name, request,
                                                                                                   context))
        if name == "ModelStreamInfer":
            return None  # UNIMPLEMENTED
        return grpc.unary_unary_rpc_method_handler(lambda request, context: front.forward(details.method, request,
                                                                                         context))
