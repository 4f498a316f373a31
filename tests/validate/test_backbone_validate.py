"""validate, bench's FLOP count, predict and sweep on a backbone build (``--outputs fpn|features``): every feature
map judged as a case of its own against PyTorch, the FLOP count against the exported graph, and the commands that
need classes refusing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.interface import FPN_NAMES
from rsz_export.shapes import Resolution
from tests.helpers import assert_clean_failure, run_cli

SIZES = (Resolution(97, 131), Resolution(160, 127))


@pytest.fixture(scope="module")
def fpn_report(fpn_build, tmp_path_factory):
    from rsz_export.validate.cases import ValidateSpec
    from rsz_export.validate.report import render_json, render_junit
    from rsz_export.validate.run import validate

    out = tmp_path_factory.mktemp("validate-fpn")
    spec = ValidateSpec(fpn_build, sizes=SIZES, replace_sizes=True, random_inputs=1)
    report = validate(spec)
    (out / "report.xml").write_text(render_junit(report))
    (out / "report.json").write_text(render_json(report))
    return report, out


def test_every_feature_map_is_a_case_within_1e_5(fpn_report, fpn_build):
    report, out = fpn_report
    assert not report.failed
    outputs = {c.output for c in report.cases}
    assert outputs == set(FPN_NAMES)
    profiles = sum(len(c.profiles) for c in report.cases if c.output == "pool")
    assert profiles and all(c.policy.rtol == 1e-5 and c.policy.atol is None for c in report.cases)
    assert all(0 < c.stats.rel_l2 <= 1e-5 for c in report.cases)
    root = ET.parse(out / "report.xml").getroot()
    names = [case.get("name") for case in root.iter("testcase")]
    assert len(names) == 5 * profiles and sum(n.endswith(" output pool") for n in names) == profiles
    data = json.loads((out / "report.json").read_text())
    assert data["environment"]["outputs"] == list(FPN_NAMES) and {c["output"] for c in data["cases"]} == outputs


def test_a_wrong_feature_map_fails_its_own_case(fpn_report, fpn_build):
    """One FPN level 0.1% off: that level's cases fail, the other levels' pass."""
    from rsz_export.backends import export_runner
    from rsz_export.validate.cases import ValidateSpec, plan_cases
    from rsz_export.validate.reference import load_inputs, reference_model
    from rsz_export.validate.run import run_cases

    manifest = load_manifest(fpn_build)
    spec = ValidateSpec(fpn_build, random_inputs=0)
    inputs, _ = load_inputs(spec, reference_model(manifest.weights, fpn_build, manifest.outputs))

    class Skewed:
        def __init__(self, runner):
            self.runner = runner

        def infer_all(self, images, profile=None):
            maps = self.runner.infer_all(images, profile)
            return [m * np.float32(1.001) if i == 2 else m for i, m in enumerate(maps)]

    cases = plan_cases([(0, SIZES[0], 1)], (0,), shared=True)
    with export_runner(manifest, fpn_build) as runner:
        results = run_cases(Skewed(runner), cases, inputs, {"stage": "export", "engine": "onnx", "backend": "ort",
                            "precision": "fp32"}, spec.policy("fp32", "fpn"), lambda m: None, names=FPN_NAMES)
    assert {r.output: r.status for r in results} == {"0": "passed", "1": "passed", "2": "failed", "3": "passed",
                                                     "pool": "passed"}
    assert "relative L2 error 0.001 > rtol 1e-05" in results[2].failures[0]


def test_backbone_flop_count_matches_the_exported_graph(fpn_build, feature_build):
    from rsz_export.bench.flops import resnet50_flop
    from tests.bench.onnx_walk import onnx_flop

    for build, outputs in ((fpn_build, "fpn"), (feature_build, "features")):
        onnx = build / load_manifest(build).onnx.file
        assert onnx_flop(onnx, 2, 97, 131) == resnet50_flop(2, 97, 131, outputs=outputs)
    assert resnet50_flop(1, 224, 224, outputs="features") == resnet50_flop(1, 224, 224) - 2 * 2048 * 1000


def test_predict_and_sweep_refuse_a_build_without_classes(fpn_build):
    from rsz_export.errors import UsageError
    from rsz_export.images.loading import sample_images
    from rsz_export.serve.session import require_classes

    result = run_cli("predict", str(fpn_build), str(sample_images()[0]))
    assert_clean_failure(result, 2, "predict ranks classes, and this build has none", "--outputs fpn: 0, 1, 2, 3, pool")
    with pytest.raises(UsageError, match="sweep ranks classes"):
        require_classes(load_manifest(fpn_build), "sweep")
