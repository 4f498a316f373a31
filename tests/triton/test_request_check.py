"""What serve accepts, without a server: every request shape an operator tried against the bare Triton core (each
of which took it down or got a 500) is refused by ``request_check`` with a 4xx and one line."""

from __future__ import annotations

import json

import pytest

from rsz_export.triton.request_check import Refused, RequestLimits, check_header, check_json_data

LIMITS = RequestLimits("resnet50", 1, 4, 800 * 800,
                       lambda h, w: "p0" if 224 <= min(h, w) and max(h, w) <= 800 else None, "h,w 224..800")


def header(shape, datatype="FP32", name="images", **fields):
    tensor = {"name": name, "datatype": datatype, "shape": shape, **fields}
    return {"inputs": [tensor]}


def refusal(request, binary_bytes=0) -> Refused:
    with pytest.raises(Refused) as refused:
        tensor, shape = check_header(request, LIMITS, binary_bytes)
        check_json_data(tensor["data"], shape)
    assert 400 <= refused.value.status < 500 and "\n" not in refused.value.message
    return refused.value


@pytest.mark.parametrize("shape, reason", [
    ([1, 3, 100000, 100000], "outside_profiles"),  # aborted the core (std::bad_alloc)
    ([1, 3, 2**62, 4], "outside_profiles"),  # killed the model's Python process
    ([1, 3, 0, 224], "outside_profiles"),  # a 500 with a traceback
    ([1, 3, -224, 224], "outside_profiles"),  # a negative dimension: 500
    ([1, 3, 224], "bad_shape"),
    ([1, 1, 224, 224], "bad_shape"),
    ([5, 3, 224, 224], "bad_shape"),
    ([1, 3, 224.0, 224], "bad_shape"),
    ([True, 3, 224, 224], "bad_shape"),
    ("1,3,224,224", "bad_shape"),
])
def test_shapes_outside_the_build_are_refused_before_anything_is_allocated(shape, reason):
    assert refusal(header(shape, data=[1.0])).reason == reason


@pytest.mark.parametrize("data", [[1.0] * 10, "x" * 100_000, [[1.0, 2.0], [3.0]], [None], {"a": 1}])
def test_data_that_does_not_fill_the_shape_is_refused(data):  # data shorter than the shape: a 500 before
    assert refusal(header([1, 3, 224, 224], data=data)).reason == "size_mismatch"


def test_a_full_request_passes_flat_or_nested():
    flat = [0.5] * (3 * 224 * 224)
    tensor, shape = check_header(header([1, 3, 224, 224], data=flat), LIMITS, 0)
    check_json_data(tensor["data"], shape)
    nested = [[[[0.5] * 224] * 224] * 3]
    check_json_data(nested, shape)
    params = {"binary_data_size": 3 * 224 * 224 * 4}
    assert check_header(header([1, 3, 224, 224], parameters=params), LIMITS, params["binary_data_size"])[1] == shape


@pytest.mark.parametrize("request_, binary, reason", [
    (header([1, 3, 224, 224], "FP64", data=[1.0]), 0, "bad_input"),
    (header([1, 3, 224, 224], name="pixels", data=[1.0]), 0, "bad_input"),
    ({"inputs": []}, 0, "bad_input"),
    ([1, 2, 3], 0, "malformed"),
    (header([1, 3, 224, 224], parameters={"binary_data_size": 100}), 100, "size_mismatch"),
    (header([1, 3, 224, 224], parameters={"binary_data_size": 602112}), 100, "size_mismatch"),
    (header([1, 3, 224, 224], data=[1.0]), 50, "size_mismatch"),
    (header([1, 3, 224, 224], parameters={"shared_memory_region": "r"}), 0, "unsupported"),
    (header([1, 3, 224, 224], data=[1.0]) | {"outputs": [{"name": "features"}]}, 0, "bad_input"),
])
def test_wrong_inputs_declared_sizes_and_shared_memory_are_refused(request_, binary, reason):
    assert refusal(request_, binary).reason == reason


def test_the_largest_request_bounds_the_body():
    assert LIMITS.max_binary_bytes == 4 * 3 * 800 * 800 * 4 + 64 * 1024
    assert LIMITS.max_json_bytes > LIMITS.max_binary_bytes


def test_a_refusal_is_one_json_line():
    refused = refusal(header([1, 3, 2**62, 4], data=[1.0]))
    assert json.loads(json.dumps({"error": refused.message}))["error"].startswith("resnet50: a 4611686018427387904x4")
