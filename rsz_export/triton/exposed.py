"""What ``serve`` puts on the addresses clients reach: the HTTP and gRPC fronts and the metrics endpoint, with the
request limits, health and metrics they share; and their orderly stop."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rsz_export.errors import EnvironmentProblem, UsageError
from rsz_export.plan.routing import covered_text
from rsz_export.triton.front import CorePool, Front
from rsz_export.triton.grpc_front import GrpcFront
from rsz_export.triton.liveness import Health, MetricsEndpoint
from rsz_export.triton.metrics import ServeMetrics
from rsz_export.triton.request_check import RequestLimits
from rsz_export.triton.spec import ServedInterface, ServeSpec


def request_limits(session, name: str) -> RequestLimits:
    """The requests the session's build serves under ``name``: its batches (a fixed one when the batch is part of
    the request and the plan's is fixed), 3 channels, the sizes its profiles cover (native policy)."""
    served = ServedInterface.of(session.manifest)
    batch = session.manifest.plan.batch
    if served.max_batch_size:
        low, high = 1, served.max_batch_size
    elif served.input_dims[0] > 0:
        low = high = served.input_dims[0]
    else:
        low, high = batch.min, batch.max

    def profile_of(h: int, w: int) -> str | None:
        try:
            return f"p{session.route(h, w).profile}"
        except UsageError:
            return None

    max_pixels = max(c.shape.max.h * c.shape.max.w for c in session.candidates)
    return RequestLimits(name, low, high, max_pixels, profile_of, covered_text(session.candidates),
                         session.manifest.output_names)


class Exposed:
    """The fronts of a running core (``core_ports``: its loopback http, grpc and metrics ports; ``core_pid``)."""

    def __init__(self, spec: ServeSpec, session, core_ports: dict[str, int], core_pid: int,
                 log: Callable[[str], None]):
        self.limits = request_limits(session, spec.name)
        self.core = CorePool(core_ports["http"])
        self.health = Health(core_pid, spec.instances, self._model_ready)
        self.metrics = ServeMetrics(tuple(f"p{i}" for i in range(len(session.manifest.plan.profiles))))
        self.http = self.grpc = self.metrics_endpoint = None
        self._core_metrics = CorePool(core_ports["metrics"])
        try:
            self.http = Front((spec.host, spec.http_port), self.limits, self.core, self.health.check,
                              self.metrics, log)  # fmt: skip
            self.http.serve_in_thread()
            self.grpc = GrpcFront((spec.host, spec.grpc_port), self.limits, core_ports["grpc"], self.health.check,
                                  self.metrics, log)  # fmt: skip
            if spec.metrics_port is not None:
                self.metrics_endpoint = MetricsEndpoint((spec.host, spec.metrics_port), self._core_metrics_text,
                                                        self.metrics.text)  # fmt: skip
        except OSError as exc:
            self.stop(0)
            raise EnvironmentProblem(f"cannot listen on {spec.host}: {exc.strerror or exc}",
                                     hint="another server may hold a port: choose others") from None

    def _model_ready(self) -> bool:
        try:
            return self.core.request("GET", f"/v2/models/{self.limits.name}/ready")[0] == 200
        except OSError:
            return False

    def _core_metrics_text(self) -> str:
        status, _, body = self._core_metrics.request("GET", "/metrics")
        return body.decode(errors="replace") if status == 200 else f"# the core's metrics answered {status}\n"

    def stop(self, drain_s: float) -> bool:
        """Refuse new requests, close idle connections, answer those in flight (up to ``drain_s``); True when
        every request in flight was answered."""
        drained = True
        grpc_stop = threading.Thread(target=self.grpc.stop, args=(drain_s,)) if self.grpc else None
        if grpc_stop:
            grpc_stop.start()
        if self.http is not None:
            drained = self.http.drain(drain_s)
        if grpc_stop:
            grpc_stop.join()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self.core.close()
        self._core_metrics.close()
        return drained
