"""README "As a backbone": its Python block, run as written on a seeded Faster R-CNN checkpoint and a bundled photo,
with the engine built over the detectors' range (600..1344) from the shared FPN build's export."""

from __future__ import annotations

import contextlib
import io
import re

from tests.helpers import REPO, make_plan

PHOTO_NAME = "chelsea.jpg"
"""451x300: the detector's transform makes it 800x1203, padded to 800x1216, a non-square input of the range."""


def readme_block() -> str:
    section = (REPO / "README.md").read_text().split("## As a backbone", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_snippet_gets_the_pytorch_detectors_detections(fpn_build, detector_checkpoint, tmp_path):
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.images.loading import sample_images
    from rsz_export.pipeline.run import BuildSpec, build

    engines = tmp_path / "engines-det"
    onnx = fpn_build / load_manifest(fpn_build).onnx.file
    build(BuildSpec(make_plan(600, 1344, 1), engines, backend="onnxruntime", onnx=onnx, outputs="fpn",
                    command="pytest README backbone"))
    photo = next(p for p in sample_images() if p.name == PHOTO_NAME)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        scope = {"CHECKPOINT": str(detector_checkpoint), "PHOTO": str(photo), "ENGINES": str(engines)}
        exec(compile(readme_block(), "README.md (As a backbone)", "exec"), scope)  # its asserts are the check
    found = scope["found"]
    assert len(found["boxes"]) > 0 and printed.getvalue() == f"{len(found['boxes'])} detections, the PyTorch " \
        "detector's\n"
    assert tuple(scope["images"].tensors.shape[-2:]) == (800, 1216)
    assert [m.shape[-2:] for m in scope["maps"]] == [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
