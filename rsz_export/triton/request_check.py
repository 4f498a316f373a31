"""What ``serve`` accepts in an inference request, checked before anything is allocated for it. Pure.

Triton 2.51's server core allocates what a request declares before it checks it against the model (a shape of
[1,3,100000,100000] with one value aborts the core with ``std::bad_alloc``; a body nested 100,000 arrays deep
overflows its JSON parser's stack), so ``serve`` puts this check in front of it (``triton.front``): a request
reaches the core only when its input, datatype, shape and byte count are ones the build serves. A refusal is a
``Refused``: an HTTP status, a reason for the metrics, and one line for the client.

The limits (``RequestLimits``) come from the build: the batch the model takes, 3 channels, the sizes some profile
covers (``profile_of``), and from those the largest request in bytes, binary or JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

from rsz_export.interface import CHANNELS, INPUT_NAME, OUTPUT_NAME

DATATYPE = "FP32"
VALUE_BYTES = 4
MAX_HEADER_BYTES = 64 * 1024
"""The JSON part of a request with binary tensors (names, shapes, parameters): a few hundred bytes in practice."""
JSON_BYTES_PER_VALUE = 32
"""Room per value when a tensor is sent as JSON text (``-1.2345678901234567e-05,`` is 24 characters)."""
REFUSAL_REASONS = ("too_large", "malformed", "unknown_model", "bad_input", "bad_shape", "outside_profiles",
                   "size_mismatch", "unsupported", "draining")  # fmt: skip
"""Every reason a request is refused for, as the ``reason`` label of the refused-requests metric."""


class Refused(Exception):
    """A request ``serve`` will not pass on: ``status`` (HTTP), ``reason`` (one of REFUSAL_REASONS), one line."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message.replace("\n", " ")[:500]


@dataclass(frozen=True)
class RequestLimits:
    """The requests a build serves: ``name``, batches ``batch_min..batch_max`` (``batch_fixed``: only that one),
    3 channels, sizes for which ``profile_of(h, w)`` names the profile that serves them (None: outside every
    profile; ``covered`` says which sizes are served, for messages)."""

    name: str
    batch_min: int
    batch_max: int
    max_pixels: int
    profile_of: Callable[[int, int], str | None]
    covered: str
    outputs: tuple[str, ...] = (OUTPUT_NAME,)
    """The model's outputs a request may ask for: ``logits``, or a backbone's feature maps."""

    @property
    def max_values(self) -> int:
        return self.batch_max * CHANNELS * self.max_pixels

    @property
    def max_binary_bytes(self) -> int:
        """The largest body with binary tensors: the largest tensor and its JSON header."""
        return self.max_values * VALUE_BYTES + MAX_HEADER_BYTES

    @property
    def max_json_bytes(self) -> int:
        """The largest body with the tensor as JSON text."""
        return self.max_values * JSON_BYTES_PER_VALUE + MAX_HEADER_BYTES

    def check_shape(self, shape) -> tuple[int, ...]:
        """The request's shape as ints, or Refused: 4 dims [n, 3, h, w], n in the batch range, h x w covered."""
        if not isinstance(shape, (list, tuple)) or not all(type(d) is int for d in shape):
            raise Refused(400, "bad_shape", f"input {INPUT_NAME!r}: the shape must be a list of integers")
        if len(shape) != 4:
            raise Refused(400, "bad_shape", f"input {INPUT_NAME!r} has unexpected shape {list(shape)}: "
                                            f"{self.name} takes [n,{CHANNELS},h,w]")  # fmt: skip
        n, channels, h, w = shape
        if channels != CHANNELS:
            raise Refused(400, "bad_shape", f"input {INPUT_NAME!r} has unexpected shape {list(shape)}: "
                                            f"{self.name} takes {CHANNELS} channels")  # fmt: skip
        if not self.batch_min <= n <= self.batch_max:
            raise Refused(400, "bad_shape", f"input {INPUT_NAME!r}: batch-size {n} is outside "
                                            f"{self.batch_min}..{self.batch_max}")  # fmt: skip
        if h < 1 or w < 1 or h * w > self.max_pixels or self.profile_of(h, w) is None:
            raise Refused(400, "outside_profiles", f"{self.name}: a {h}x{w} input is outside every profile; "
                                                   f"covered: {self.covered}")  # fmt: skip
        return tuple(shape)


def check_parameters(parameters, where: str) -> None:
    """Refused for parameters naming shared memory (not offered: its endpoints are closed to clients)."""
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise Refused(400, "malformed", f"{where}: 'parameters' must be an object")
    if any(str(key).startswith("shared_memory") for key in parameters):
        raise Refused(400, "unsupported", f"{where}: shared memory is not offered by this server; send the data")


def check_header(header, limits: RequestLimits, binary_bytes: int) -> tuple[dict, tuple[int, ...]]:
    """The one input of a KServe v2 request header (the JSON object) and its shape, or Refused. ``binary_bytes``:
    how many bytes follow the header (Triton's binary tensor extension); its input must declare exactly that."""
    if not isinstance(header, dict):
        raise Refused(400, "malformed", "the request must be a JSON object")
    check_parameters(header.get("parameters"), "the request")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        count = len(inputs) if isinstance(inputs, list) else 0
        raise Refused(400, "bad_input", f"expected 1 inputs but got {count} inputs for model {limits.name!r}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise Refused(400, "bad_input", f"unexpected inference input {str(tensor.get('name'))[:64]!r} for model "
                                        f"{limits.name!r}: it takes {INPUT_NAME!r}")  # fmt: skip
    if tensor.get("datatype") != DATATYPE:
        raise Refused(400, "bad_input", f"inference input {INPUT_NAME!r} data-type is "
                                        f"{str(tensor.get('datatype'))[:16]!r}, but model {limits.name!r} expects "
                                        f"{DATATYPE!r}")  # fmt: skip
    check_parameters(tensor.get("parameters"), f"input {INPUT_NAME!r}")
    shape = limits.check_shape(tensor.get("shape"))
    _check_outputs(header.get("outputs"), limits)
    declared = (tensor.get("parameters") or {}).get("binary_data_size")
    expected = math.prod(shape) * VALUE_BYTES
    if declared is None and binary_bytes:
        raise Refused(400, "size_mismatch", f"{binary_bytes} bytes follow the header but no input declares them")
    if declared is not None and (type(declared) is not int or declared != expected or binary_bytes != expected):
        raise Refused(400, "size_mismatch", f"input {INPUT_NAME!r}: unexpected size: shape {list(shape)} "
                                            f"FP32 is {expected} bytes; declared {str(declared)[:24]}, sent "
                                            f"{binary_bytes}")  # fmt: skip
    if declared is None and "data" not in tensor:
        raise Refused(400, "size_mismatch", f"input {INPUT_NAME!r} has no data")
    return tensor, shape


def _check_outputs(outputs, limits: RequestLimits) -> None:
    if outputs is None:
        return
    names = limits.outputs
    listed = ", ".join(map(repr, names))
    if not isinstance(outputs, list) or len(outputs) > len(names):
        raise Refused(400, "bad_input", f"'outputs' must list at most {listed}")
    asked = []
    for output in outputs:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in names or name in asked:
            what = "one output" if len(names) == 1 else f"{len(names)} outputs"
            raise Refused(400, "bad_input", f"model {limits.name!r} has {what}, {listed}; 'outputs' asks for "
                                            f"{str(name)[:64]!r}" + (" twice" if name in asked else ""))
        asked.append(name)
        check_parameters(output.get("parameters"), f"output {name!r}")


def check_json_data(data, shape: tuple[int, ...]):
    """``data`` (a JSON input's values, flat or nested) as float32, or Refused unless it holds exactly the shape's
    count of numbers."""
    import numpy as np

    try:
        values = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise Refused(400, "size_mismatch", f"input {INPUT_NAME!r}: 'data' must be numbers, flat or nested as "
                                            f"the shape {list(shape)}") from None  # fmt: skip
    if values.size != math.prod(shape):
        raise Refused(400, "size_mismatch", f"input {INPUT_NAME!r}: unexpected size: shape {list(shape)} holds "
                                            f"{math.prod(shape)} values, 'data' has {values.size}")  # fmt: skip
    return values


def as_binary(header: dict, values) -> tuple[bytes, int]:
    """A checked JSON request re-written with its values as a binary tensor (the core then need not parse them
    again): (body, length of its JSON header)."""
    tensor = {k: v for k, v in header["inputs"][0].items() if k != "data"}
    tensor["parameters"] = {**(tensor.get("parameters") or {}), "binary_data_size": values.size * VALUE_BYTES}
    head = json.dumps({**header, "inputs": [tensor]}).encode()
    return head + values.tobytes(), len(head)
