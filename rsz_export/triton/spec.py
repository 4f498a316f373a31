"""What ``rsz-export serve`` is asked for and what it offers clients, checked and computed without PyTriton. Pure.

``ServeSpec``: the engines folder, the model name (the repository's naming rule), the addresses (127.0.0.1 and
Triton's usual ports unless told), model instances and the dynamic batcher's queue delay, each checked when the
spec is made. ``ServedInterface``: the model's tensors as Triton describes them, by the rule the repository
writer uses (``triton_config.tensor_dims``), so that ``serve`` and a repository of the same build look alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rsz_export.errors import OutputError, UsageError, check_int, shown
from rsz_export.interface import INPUT_NAME, OUTPUT_NAME, SERVED_MODEL_NAME
from rsz_export.triton.config import MAX_INSTANCES, QUEUE_DELAY_US, TritonOptions, tensor_layout

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
MAX_QUEUE_DELAY_US = 1_000_000


def beyond_loopback(host: str) -> bool:
    """Whether ``host`` makes the server reachable from other machines: any address it stands for that is not
    a loopback one (``0.0.0.0`` and ``::`` stand for every interface). A name that does not resolve is left to
    the port check, which refuses it."""
    import ipaddress
    import socket

    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        return False
    return any(not ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in found)


def check_log_file(path: Path) -> None:
    """OutputError (exit 5) before the server starts when the server core could not write its log at ``path``:
    its folder missing or not writable, or ``path`` something other than a regular file. The core does not
    create folders, and would start without a log."""
    from rsz_export.artifacts.files import check_output_target

    if path.exists() and not path.is_file():
        raise OutputError(f"--log-file {shown(path)} is not a regular file", hint="give a file path for the log")
    if not path.parent.is_dir():
        raise OutputError(f"--log-file {shown(path)}: its folder {shown(path.parent)} does not exist",
                          hint="create the folder first, or give a path in an existing one")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"--log-file {shown(path)} cannot be written: permission denied")
    check_output_target(path)  # the folder takes a new file


@dataclass(frozen=True)
class ServeSpec:
    """What ``serve`` serves and where: the engines folder, the model name, addresses, instances, batching."""

    engines_dir: Path
    name: str = SERVED_MODEL_NAME
    host: str = DEFAULT_HOST
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    metrics_port: int | None = None
    backend: str | None = None
    instances: int = 1
    threads: int | None = None
    max_queue_delay_us: int = QUEUE_DELAY_US
    log_file: Path | None = None
    log_verbose: int = 0

    def __post_init__(self) -> None:
        TritonOptions(name=self.name)  # the repository's rule for model names
        ports = [("http", self.http_port), ("grpc", self.grpc_port)] + (
            [("metrics", self.metrics_port)] if self.metrics_port is not None else [])
        for what, port in ports:
            check_int(port, f"{what} port", 1, 65535)
        if len({port for _, port in ports}) < len(ports):
            raise UsageError(f"the ports must differ, got {', '.join(f'{w} {p}' for w, p in ports)}")
        check_int(self.instances, "instances", 1, MAX_INSTANCES)
        check_int(self.max_queue_delay_us, "max queue delay (microseconds)", 0, MAX_QUEUE_DELAY_US)



@dataclass(frozen=True)
class ServedInterface:
    """The model's tensors as Triton describes them: ``max_batch_size`` (0: the batch is part of the request)
    and the dims of ``images`` and ``logits`` without Triton's batch dimension."""

    max_batch_size: int
    input_dims: tuple[int, ...]
    output_dims: tuple[int, ...]
    outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Every output with its dims: ``logits``, or each feature map of a backbone (sides -1)."""

    @classmethod
    def of(cls, manifest) -> ServedInterface:
        """The interface of a build: the repository's rule (``triton_config.tensor_layout``)."""
        max_batch_size, input_dims, outputs = tensor_layout(manifest, None, engine_bound=True)
        return cls(max_batch_size, input_dims, outputs[0][1], outputs)

    def describe(self) -> str:
        batch = f"n <= {self.max_batch_size}, batched by Triton" if self.max_batch_size else "no Triton batching"
        lead = (-1,) if self.max_batch_size else ()
        shape = ",".join(map(str, lead + self.input_dims))
        outs = self.outputs or ((OUTPUT_NAME, self.output_dims),)
        described = ", ".join(f"{n} FP32 [{','.join(map(str, lead + dims))}]" for n, dims in outs)
        return f"input {INPUT_NAME} FP32 [{shape}] ({batch}); output{'s' if len(outs) > 1 else ''} {described}"
