"""serve without a server: its options checked when they are made, ports probed, and the interface it offers
(the one ``rsz-export triton`` writes into a repository for the same build)."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.errors import EnvironmentProblem, UsageError
from rsz_export.serve.triton_config import TritonOptions, plan_models
from rsz_export.serve.triton_server import ServedInterface, ServeSpec, check_port_free
from rsz_export.shapes import BatchRange


@pytest.mark.parametrize("fields, message", [
    ({"name": "res net"}, "cannot name a Triton model"),
    ({"http_port": 8100, "grpc_port": 8100}, "the ports must differ"),
    ({"metrics_port": 8001}, "the ports must differ"),
    ({"http_port": 70000}, "http port must be a whole number in 1..65535"),
    ({"instances": 0}, "instances must be"),
    ({"max_queue_delay_us": -1}, "max queue delay"),
])
def test_bad_settings_are_refused_when_made(fields, message):
    with pytest.raises(UsageError, match=message):
        ServeSpec(Path("engines"), **fields)


def test_a_port_in_use_and_an_unknown_host_are_refused():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EnvironmentProblem, match=f"cannot listen on 127.0.0.1:{port} \\(grpc\\)"):
            check_port_free("127.0.0.1", port, "grpc")
    check_port_free("127.0.0.1", port, "grpc")  # free again once closed
    with pytest.raises(UsageError, match="--host 'no-such-host.invalid'"):
        check_port_free("no-such-host.invalid", 8000, "http")


@pytest.mark.parametrize("batch, expected", [
    (BatchRange(1, 1, 1), (0, (1, 3, -1, -1), (1, 1000))),
    (BatchRange(1, 4, 4), (4, (3, -1, -1), (1000,))),
    (BatchRange(2, 8, 8), (0, (-1, 3, -1, -1), (-1, 1000))),
    (BatchRange(4, 4, 4), (0, (4, 3, -1, -1), (4, 1000))),
])
def test_the_interface_is_the_repositorys(tiny_engines, batch, expected):
    manifest = load_manifest(tiny_engines)
    manifest = replace(manifest, plan=replace(manifest.plan, batch=batch))
    served = ServedInterface.of(manifest)
    model = plan_models(manifest, TritonOptions())[0]
    assert (served.max_batch_size, served.input_dims, served.output_dims) == expected
    assert expected == (model.max_batch_size, model.input_dims, model.output_dims)
