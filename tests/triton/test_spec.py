"""serve without a server: its options checked when they are made, ports probed, and the interface it offers
(the one ``rsz-export triton`` writes into a repository for the same build)."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.errors import EnvironmentProblem, UsageError
from rsz_export.shapes import BatchRange
from rsz_export.triton.config import TritonOptions, plan_models
from rsz_export.triton.server import check_port_free
from rsz_export.triton.spec import ServedInterface, ServeSpec


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


class FakeTriton:
    """Stands in for ``pytriton.triton.Triton``: ``run`` fails like PyTriton's start-up race (writing its log line)
    while ``races`` lasts, or with another error when ``other`` is set."""

    races, other, starts, stops = 0, False, 0, 0

    def __init__(self, config, security_config):
        self.config = config

    def bind(self, **model):
        self.model = model

    def run(self):
        FakeTriton.starts += 1
        if FakeTriton.other or FakeTriton.starts <= FakeTriton.races:
            mark = "model failed" if FakeTriton.other else "get_config_from_handshake_server: ConnectionRefusedError"
            with Path(self.config.log_file).open("a") as log:
                log.write(f"E1202 python_be.cc] {mark}\n")
            raise RuntimeError("failed to load 'resnet50'")

    def stop(self):
        FakeTriton.stops += 1


@pytest.mark.parametrize("races, other, starts, retries, outcome", [
    (2, False, 3, 2, None),  # two races, then a start
    (3, False, 3, 2, "did not start"),  # three races: given up after the third attempt
    (0, True, 1, 0, "model failed"),  # another failure: no second attempt
])
def test_the_start_is_tried_again_only_after_pytritons_race(tiny_engines, tmp_path, races, other, starts, retries,
                                                            outcome):
    pytest.importorskip("pytriton.triton", reason="the [serve] extra is not installed")
    from types import SimpleNamespace

    from rsz_export.serve.session import Session
    from rsz_export.triton.server import LocalServer

    fake = SimpleNamespace(Triton=FakeTriton, TritonSecurityConfig=lambda restricted_endpoints: None)
    FakeTriton.races, FakeTriton.other, FakeTriton.starts, FakeTriton.stops = races, other, 0, 0
    said = []
    server = LocalServer(ServeSpec(tiny_engines, log_file=tmp_path / "core.log"), log=said.append)
    with Session(tiny_engines) as server.session:
        if outcome is None:
            server._start(fake)
            assert server._triton.model["config"].max_batch_size == 1 and not server._triton.model["config"].batching
        else:
            with pytest.raises(EnvironmentProblem, match=outcome):
                server._start(fake)
    failed = starts - (outcome is None)
    assert (FakeTriton.starts, FakeTriton.stops, len(said)) == (starts, failed, retries)
