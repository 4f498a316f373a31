"""serve's own metrics text: every profile and refusal reason present, zeros included."""

from __future__ import annotations

from rsz_export.triton.metrics import ServeMetrics


def test_metrics_text_names_every_profile_and_reason():
    metrics = ServeMetrics(("p0", "p1"))
    metrics.answered("p1", 3)
    metrics.refuse("too_large")
    text = metrics.text()
    assert 'rsz_requests_total{profile="p1"} 1' in text and 'rsz_images_total{profile="p1"} 3' in text
    assert 'rsz_requests_total{profile="p0"} 0' in text
    assert 'rsz_refused_requests_total{reason="too_large"} 1' in text
    assert 'rsz_refused_requests_total{reason="draining"} 0' in text
    assert "# TYPE rsz_in_flight_requests gauge" in text
