"""``rsz-export serve``: a build's engines behind Triton's protocol, on NVIDIA's PyTriton (the ``[serve]`` extra).

PyTriton starts a real Triton server core (``tritonserver``: the KServe v2 HTTP and gRPC front ends, Triton's model
configuration and statistics extensions, the dynamic batcher) and hands each batch it forms to a Python callable in
this process. The callable runs it through a ``Session`` with the ``native`` policy: a tensor runs at its own size,
on the engine and profile the plan's routing rule picks, and its logits are the answer.

What clients see: the names and shapes of the Triton repository ``rsz-export triton`` writes from the same build
(``triton.config.batching`` decides both). Model ``NAME`` (``interface.SERVED_MODEL_NAME`` unless told
otherwise), version 1, input ``images`` FP32, output ``logits`` FP32. A plan whose batch runs from 1 to N > 1:
dims [3, -1, -1] and [classes] with ``max_batch_size`` N and Triton's dynamic batcher, which batches only requests
of identical shape (so each batch has one size and one route). Otherwise the batch is part of the request:
``max_batch_size`` 0 and dims [N, 3, -1, -1] (a fixed batch N, the default 1) or [-1, 3, -1, -1]. One model
serves every engine of the build, routing inside, where a repository of an engine-per-profile build holds one
model per engine.

What clients reach is not the core itself: the core listens on loopback ports of its own, and ``serve``'s fronts
(``triton.front`` for HTTP, ``triton.grpc_front`` for gRPC, in this process) listen on the addresses asked for.
They check every inference request against the build (input, datatype, shape, declared bytes:
``triton.request_check``) before the core allocates anything for it, answer health from the processes
(``triton.liveness``), count requests for the metrics endpoint, and drain on stop. A watchdog process
(``triton.watchdog``) removes the core, its backend processes and their shared memory if ``serve`` is killed.

One Session worker per Triton model instance (``instances``): each instance's callable runs in its own thread and
takes a worker's runners for its batch, so no runner is used by two threads at once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from rsz_export.errors import EnvironmentProblem, UsageError
from rsz_export.interface import CHANNELS, INPUT_NAME
from rsz_export.plan.routing import covered_text
from rsz_export.serve.preprocess_policy import ModelInput
from rsz_export.serve.session import Session
from rsz_export.triton.config import SERVE_INSTALL, preferred_sizes
from rsz_export.triton.exposed import Exposed
from rsz_export.triton.spec import ServedInterface, ServeSpec
from rsz_export.triton.watchdog import DONE as WATCHDOG_DONE
from rsz_export.triton.watchdog import descendants, finish, remove_files, shared_memory_of

EXIT_TIMEOUT_S = 2
"""How long the stopping core waits for requests in flight: the fronts have drained them by then."""
DRAIN_S = 4.0
"""How long a stopping front waits for its requests in flight (with the core's stop, inside 10 s)."""
STRAGGLER_S = 2.0
"""How long the core's processes may take to exit after it has stopped before they are killed."""
RESTRICTED_ENDPOINTS = ("shared-memory", "model-repository", "trace", "logging")
"""Triton endpoints that need PyTriton's per-run token: clients cannot unload the model, register shared memory or
change logging. Health, metadata, inference, model config and statistics stay open, as load tools expect."""
LOG_TAIL_LINES = 15
START_ATTEMPTS = 3
RACE_MARK = "get_config_from_handshake_server"
"""In PyTriton 0.7 the second and later model instances fetch their settings from a socket the first one opens,
and can find its file before it listens (ConnectionRefusedError in the log, more often on a busy machine); the
model then fails to load. The start is tried again when the log shows that, and only then."""


def require_pytriton():
    """PyTriton's ``triton`` module, or EnvironmentProblem (exit 3) saying how to install it."""
    try:
        import pytriton.triton as triton
    except ImportError as exc:
        raise EnvironmentProblem(f"rsz-export serve needs NVIDIA PyTriton, which is not importable here ({exc})",
                                 hint=f"install the serving extra: {SERVE_INSTALL}") from None
    return triton


def check_port_free(host: str, port: int, what: str) -> None:
    """EnvironmentProblem (exit 3) when nothing can listen on host:port; UsageError for a host that does not
    resolve. Checked before the server core starts, whose own failure would only show in its log."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r} is not an address this machine can listen on: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot listen on {host}:{port} ({what}): {exc.strerror}",
                                     hint=f"another server may hold it: choose another with --{what}-port") from None


def batch_outputs(session: Session, images, name: str) -> list:
    """Every output (logits, or a backbone's feature maps) of a float32 [n, 3, h, w] batch at its own size, routed
    by the plan's rule (``native``); UsageError naming the covered range when no profile covers h x w."""
    n, channels, h, w = images.shape
    if channels != CHANNELS:  # Triton's core checks the config's dims first; kept for library callers
        raise UsageError(f"{name} takes {CHANNELS} channels, got {channels}")
    if not 1 <= n <= session.manifest.plan.batch.max:
        raise UsageError(f"{name} takes batches of 1..{session.manifest.plan.batch.max}, got {n}")
    try:
        chosen = session.route(h, w)
    except UsageError:
        raise UsageError(f"{name}: a {h}x{w} input is outside every profile; covered: "
                         f"{covered_text(session.candidates)}") from None
    outputs, _ = session.infer([ModelInput((h, w), chosen, "none", images[i : i + 1]) for i in range(n)], True)
    return outputs


def infer_function(session: Session, name: str, log: Callable[[str], None]):
    """The callable one Triton model instance runs: a batch of identical shapes in, its outputs out (logits, or
    each feature map of a backbone). A refused request is logged in one line; PyTriton turns the exception into
    the error response."""
    import numpy as np
    from pytriton.decorators import batch

    @batch
    def infer(**inputs):
        images = inputs.get(INPUT_NAME)
        if images is None:  # Triton's core refuses a request without it; kept for library callers
            raise UsageError(f"{name} needs the input {INPUT_NAME!r}")
        try:
            outputs = batch_outputs(session, np.ascontiguousarray(images, dtype=np.float32), name)
        except UsageError as exc:
            log(f"refused a request: {exc.message}")
            raise
        names = session.manifest.output_names
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, outputs, strict=True)}

    return infer


def loopback_port() -> int:
    """A free port on 127.0.0.1 for the core (which clients never reach)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def triton_config(spec: ServeSpec, log_file: Path, ports: dict[str, int]):
    """The server core's settings: loopback ``ports`` (http, grpc, metrics) only, nothing else listening; its
    metrics only when ``spec`` asks for a metrics port (the front serves them there, with its own)."""
    from pytriton.triton import TritonConfig

    metrics = spec.metrics_port is not None
    return TritonConfig(
        http_address="127.0.0.1", http_port=ports["http"], grpc_address="127.0.0.1", grpc_port=ports["grpc"],
        allow_metrics=metrics, allow_cpu_metrics=metrics, allow_gpu_metrics=metrics,
        metrics_address="127.0.0.1" if metrics else None, metrics_port=ports["metrics"] if metrics else None,
        allow_sagemaker=False, allow_vertex_ai=False, exit_timeout_secs=EXIT_TIMEOUT_S,
        log_file=log_file, log_verbose=spec.log_verbose,
    )


MALLOC_ARENAS = 2
M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the number of malloc arenas (malloc.h)."""


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas for this process. By default each thread that allocates gets an arena of its own
    (up to 8 per core) which keeps the memory it has freed; the fronts' threads read multi-megabyte bodies, and
    a 2,000-request soak grew ``serve`` by 100 MiB and more without the cap, about nothing with it. Process-wide,
    so the command calls it, not the library; a no-op off glibc."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, count)
    except (OSError, AttributeError):
        pass


def start_watchdog() -> subprocess.Popen:
    """The process that cleans up after this one if it is killed (``triton.watchdog``), in a session of its own."""
    return subprocess.Popen([sys.executable, "-m", "rsz_export.triton.watchdog", str(os.getpid())],
                            stdin=subprocess.PIPE, text=True, start_new_session=True)


def stop_watchdog(watchdog: subprocess.Popen | None) -> None:
    """Tell the watchdog the stop was orderly (nothing left to clean) and let it exit."""
    if watchdog is None:
        return
    try:
        watchdog.stdin.write(f"{WATCHDOG_DONE}\n")
        watchdog.stdin.close()
    except OSError:
        pass
    try:
        watchdog.wait(5)
    except subprocess.TimeoutExpired:
        watchdog.kill()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


class LocalServer:
    """A running ``serve``: enter starts it (engines opened and verified, then the server core, then the model),
    ``wait`` serves until asked to stop, exit stops the core and frees the engines."""

    def __init__(self, spec: ServeSpec, log: Callable[[str], None] = print):
        self.spec, self.log = spec, log
        self.session: Session | None = None
        self._triton = None
        self._temp: tempfile.TemporaryDirectory | None = None
        self._watchdog: subprocess.Popen | None = None
        self._core_ports = {what: 0 for what in ("http", "grpc", "metrics")}
        self.exposed: Exposed | None = None

    @property
    def log_file(self) -> Path:
        return self.spec.log_file or Path(self._temp.name) / "tritonserver.log"

    def __enter__(self) -> LocalServer:
        triton = require_pytriton()
        spec = self.spec
        if spec.log_file is None:
            self._temp = tempfile.TemporaryDirectory(prefix="rsz-serve-")
        try:
            self._watchdog = start_watchdog()
            self.session = Session(spec.engines_dir, backend=spec.backend, preprocess="native",
                                   workers=spec.instances, threads=spec.threads)
            self.session.open_all()  # every engine file verified before a port opens
            for what, port in (("http", spec.http_port), ("grpc", spec.grpc_port), ("metrics", spec.metrics_port)):
                if port is not None:
                    check_port_free(spec.host, port, what)
            self._core_ports = {what: loopback_port() for what in self._core_ports}
            self._start(triton)
            self.exposed = Exposed(spec, self.session, self._core_ports, self.core_pid, self.log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, triton) -> None:
        """Start the server core with the model bound; again (up to START_ATTEMPTS) after PyTriton's start-up race."""
        for attempt in range(1, START_ATTEMPTS + 1):
            logged = self.log_file.stat().st_size if self.log_file.exists() else 0
            self._triton = None
            try:
                self._triton = triton.Triton(config=triton_config(self.spec, self.log_file, self._core_ports),
                                             security_config=triton.TritonSecurityConfig(
                                                 restricted_endpoints=list(RESTRICTED_ENDPOINTS)))
                self._bind()
                self._triton.run()
                return
            except Exception as exc:  # PyTriton's timeouts and client errors: the core's log says why
                if self._triton is not None:
                    self._triton.stop()
                    self._triton = None
                raced = RACE_MARK in self._log_since(logged)
                if not (raced and attempt < START_ATTEMPTS):
                    raise EnvironmentProblem(f"the Triton server core did not start ({type(exc).__name__}: {exc}); "
                                             f"its log ends:\n{log_tail(self.log_file)}") from None
                self.log("a model instance did not start (PyTriton's race between instances starting); again")

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                return log.read()[offset:].decode(errors="replace")
        except OSError:
            return ""

    def _bind(self) -> None:
        import numpy as np
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        served = ServedInterface.of(self.session.manifest)
        batcher = DynamicBatcher(max_queue_delay_microseconds=self.spec.max_queue_delay_us,
                                 preferred_batch_size=list(preferred_sizes(max(served.max_batch_size, 1))))
        functions = [infer_function(self.session, self.spec.name, self.log) for _ in range(self.spec.instances)]
        self._triton.bind(
            model_name=self.spec.name, infer_func=functions, strict=True,
            inputs=[Tensor(name=INPUT_NAME, dtype=np.float32, shape=served.input_dims)],
            outputs=[Tensor(name=n, dtype=np.float32, shape=dims) for n, dims in served.outputs],
            config=ModelConfig(batching=served.max_batch_size > 0, max_batch_size=max(served.max_batch_size, 1),
                               batcher=batcher),
        )

    @property
    def core_pid(self) -> int:
        """The Triton core's process id (PyTriton keeps its ``sh`` command object on a private attribute)."""
        return self._triton._triton_server._tritonserver_running_cmd.pid

    def wait(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Serve until ``stop`` is set; EnvironmentProblem if the server core or a model process ends meanwhile."""
        while not stop.wait(poll_s):
            gone = self.exposed.health.failure() if self._triton.is_alive() else "the Triton server core stopped"
            if gone and not stop.is_set():
                raise EnvironmentProblem(f"{gone} on its own; the core's log ({self.log_file}) "
                                         f"ends:\n{log_tail(self.log_file)}")

    def __exit__(self, *exc) -> None:
        try:
            if self.exposed is not None:
                if not self.exposed.stop(DRAIN_S):
                    self.log(f"requests still in flight after {DRAIN_S:.0f} s were cut off")
                self.exposed = None
            if self._triton is not None:
                below = descendants(self.core_pid)
                core = {pid: started for pid, started in descendants(os.getpid()).items()
                        if pid == self.core_pid or pid in below}  # fmt: skip
                shm = shared_memory_of(core)
                self._triton.stop()
                self._triton = None
                if finish(core, STRAGGLER_S):  # a backend process that outlived its core
                    self.log("killed a process the server core left behind")
                remove_files(shm)  # what a backend process killed on its way out could not release
        finally:
            stop_watchdog(self._watchdog)
            self._watchdog = None
            if self.session is not None:
                self.session.__exit__(None, None, None)
                self.session = None
            if self._temp is not None:
                self._temp.cleanup()
                self._temp = None

    def describe(self) -> list[str]:
        """What is served where, for the start-up message."""
        spec = self.spec
        lines = [
            f"serving {spec.name} from {spec.engines_dir} ({len(self.session.engines)} engine(s), "
            f"{spec.instances} instance(s)): KServe v2 over HTTP at http://{spec.host}:{spec.http_port} "
            f"and gRPC at {spec.host}:{spec.grpc_port}",
            f"  {ServedInterface.of(self.session.manifest).describe()}; sizes: {covered_text(self.session.candidates)}",
        ]
        if spec.metrics_port is not None:
            lines.append(f"  metrics at http://{spec.host}:{spec.metrics_port}/metrics")
        lines.append(f"  server log: {self.log_file if spec.log_file else 'kept only if it fails to start'}; "
                     "stop with Ctrl-C or SIGTERM")
        return lines
