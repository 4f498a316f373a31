"""``rsz-export serve``: the engines of a build behind Triton's protocol (KServe v2 HTTP/gRPC), until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from rsz_export.cli.common import console, handles_errors
from rsz_export.cli.options import backend_option, engines_dir_argument, threads_option
from rsz_export.errors import shown
from rsz_export.interface import SERVED_MODEL_NAME
from rsz_export.triton.config import QUEUE_DELAY_US
from rsz_export.triton.spec import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_HTTP_PORT,
    beyond_loopback,
    check_log_file,
)

EXPOSED_WARNING = (
    "--host {host} listens beyond this machine: anyone who can reach it can call the model, unauthenticated and "
    "unencrypted. Serve there only on a network you trust, or behind a proxy that authenticates clients, "
    "terminates TLS and limits the request rate (docs/serving.md, \"Listening beyond this machine\")"
)


class StopSignals:
    """SIGINT and SIGTERM: the first asks the server to stop in order (right away while serving; once started if it
    is still starting), so it is not unwound by an exception; a second one aborts (KeyboardInterrupt: exit 130)."""

    def __init__(self):
        self.event = threading.Event()

    def install(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()


@click.command()
@engines_dir_argument
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on (HTTP, gRPC and metrics); 0.0.0.0 for every interface (warned about on "
              "start: nothing authenticates clients).")
@click.option("--http-port", type=int, default=DEFAULT_HTTP_PORT, show_default=True, help="KServe v2 HTTP/REST port.")
@click.option("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, show_default=True, help="KServe v2 gRPC port.")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port (default: no metrics).")
@click.option("--name", default=SERVED_MODEL_NAME, show_default=True,
              help="The model's name for clients (letters, digits, '.', '_', '-').")
@backend_option
@threads_option
@click.option("--instances", type=int, default=1, show_default=True,
              help="Model instances: batches run concurrently (ONNX Runtime on the CPU shares one session per engine).")
@click.option("--max-queue-delay-us", type=int, default=QUEUE_DELAY_US, show_default=True,
              help="How long Triton's dynamic batcher may hold a request for companions of the same shape.")
@click.option("--log-file", type=click.Path(dir_okay=False),
              help="Keep the Triton server core's log here (a file in an existing, writable folder).")
@handles_errors
def serve(engines_dir, host, http_port, grpc_port, metrics_port, name, backend, threads, instances,
          max_queue_delay_us, log_file):
    """Serve the engines in DIR (default ./engines) over Triton's protocol until Ctrl-C or SIGTERM.

    Any Triton or KServe v2 client works: model NAME, input images FP32 [n,3,h,w] (n up to the plan's max
    batch, h x w inside a profile, run at its own size), output logits FP32 [n,classes]. Requests of the same
    shape are batched by Triton's dynamic batcher; each batch runs on the engine and profile that cover its size.
    Binds 127.0.0.1 unless --host says otherwise. Needs the serving extra: pip install -e ".[serve]".
    Ctrl-C or SIGTERM stops it in order (requests in flight finish) and exits 0; a second one aborts (exit 130).
    """
    from rsz_export.triton.server import LocalServer, limit_malloc_arenas
    from rsz_export.triton.spec import ServeSpec

    out = console()
    logging.getLogger("pytriton").setLevel(logging.INFO if out.verbosity > 1 else logging.CRITICAL)
    spec = ServeSpec(Path(engines_dir), name=name, host=host, http_port=http_port, grpc_port=grpc_port,
                     metrics_port=metrics_port, backend=backend, instances=instances, threads=threads,
                     max_queue_delay_us=max_queue_delay_us, log_file=Path(log_file) if log_file else None,
                     log_verbose=max(0, out.verbosity - 1))
    if spec.log_file is not None:
        check_log_file(spec.log_file)
    if beyond_loopback(spec.host):
        out.warn(EXPOSED_WARNING.format(host=shown(spec.host)))
    limit_malloc_arenas()
    out.info("starting the Triton server core...")
    stop = StopSignals().install()
    with LocalServer(spec, log=out.info) as server:
        for line in server.describe():
            out.info(line)
        server.wait(stop.event)
        out.info("stopping...")
    out.info("stopped")


COMMANDS = (serve,)
