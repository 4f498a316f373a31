"""``serve``'s own Prometheus metrics: what only it knows (the profile each request ran on, what the preprocessing
policy resized, what was refused and why), in Prometheus' text format next to the Triton core's. Pure.

Names (all counters, since the server started):

* ``rsz_requests_total{profile}``: inference requests answered, by the plan profile that ran them (``p0``...);
* ``rsz_images_total{profile}``: images in those requests;
* ``rsz_images_resized_total{policy}``: images the preprocessing policy resized (``serve`` runs the ``native``
  policy: a tensor runs at its own size, so this stays 0 there; kept so dashboards read every entry point alike);
* ``rsz_refused_requests_total{reason}``: requests refused before the core saw them, by reason
  (``request_check.REFUSAL_REASONS``: too_large, malformed, unknown_model, bad_input, bad_shape,
  outside_profiles, size_mismatch, unsupported, draining);
* ``rsz_in_flight_requests`` (a gauge): inference requests being answered now.
"""

from __future__ import annotations

import threading
from collections import Counter

from rsz_export.triton.request_check import REFUSAL_REASONS

PREFIX = "rsz_"
METRIC_HELP = {
    "requests_total": ("counter", "Inference requests answered, by the plan profile that ran them."),
    "images_total": ("counter", "Images in the answered inference requests, by plan profile."),
    "images_resized_total": ("counter", "Images the preprocessing policy resized before inference."),
    "refused_requests_total": ("counter", "Requests refused before reaching the server core, by reason."),
    "in_flight_requests": ("gauge", "Inference requests being answered now."),
}


class ServeMetrics:
    """Thread-safe counters for the metrics above; ``text()`` renders them."""

    def __init__(self, profiles: tuple[str, ...], policy: str = "native"):
        self._lock = threading.Lock()
        self.profiles, self.policy = profiles, policy
        self.requests: Counter = Counter()
        self.images: Counter = Counter()
        self.resized = 0
        self.refused: Counter = Counter()
        self.in_flight = 0

    def answered(self, profile: str, images: int) -> None:
        with self._lock:
            self.requests[profile] += 1
            self.images[profile] += images

    def refuse(self, reason: str) -> None:
        with self._lock:
            self.refused[reason] += 1

    def started(self, delta: int = 1) -> None:
        with self._lock:
            self.in_flight += delta

    def text(self) -> str:
        """The metrics in Prometheus' text exposition format (every label value present, zeros included)."""
        with self._lock:
            series = {
                "requests_total": [(f'profile="{p}"', self.requests[p]) for p in self.profiles],
                "images_total": [(f'profile="{p}"', self.images[p]) for p in self.profiles],
                "images_resized_total": [(f'policy="{self.policy}"', self.resized)],
                "refused_requests_total": [(f'reason="{r}"', self.refused[r]) for r in REFUSAL_REASONS],
                "in_flight_requests": [("", self.in_flight)],
            }
        lines = []
        for name, values in series.items():
            kind, help_text = METRIC_HELP[name]
            lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}"]
            lines += [f"{PREFIX}{name}{{{labels}}} {value}" if labels else f"{PREFIX}{name} {value}"
                      for labels, value in values]  # fmt: skip
        return "\n".join(lines) + "\n"
