"""Cache keys of the build stages and the file names derived from them. Pure.

A stage's key is a digest of everything that affects its result; a rerun whose keys match the manifest (and
whose files still match their sha256) reuses the stage. Files are named by their stage key, so a new build never
overwrites what the current manifest points to: an interrupted or failed build leaves the previous manifest and
its files intact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from rsz_export import __version__

ONNX_PATTERN = "model-{key}.onnx"
LABELS_PATTERN = "labels-{key}.txt"
ENGINE_DIR_PATTERN = "{backend}-{key}"
CALIBRATION_PATTERN = "calibration-{key}.json"
KEY_CHARS = 12
"""Hex digits of a key used in file names."""
_EXPORT_LIBRARIES = ("torch", "torchvision", "onnx")


@dataclass(frozen=True)
class StageKeys:
    """The cache keys of one build, a stage each (``stage_keys``); a manifest records them as a dict."""

    export: str
    engines: str
    manifest: str
    calibration: str | None = None
    """int8 builds only."""

    def to_dict(self) -> dict[str, str]:
        """The manifest's record of the keys."""
        calibration = {} if self.calibration is None else {"calibration": self.calibration}
        return {"export": self.export, **calibration, "engines": self.engines, "manifest": self.manifest}

    @classmethod
    def recorded(cls, manifest) -> StageKeys | None:
        """The keys a manifest recorded (None without a manifest; empty strings for keys it lacks)."""
        if manifest is None:
            return None
        keys = manifest.keys
        return cls(keys.get("export", ""), keys.get("engines", ""), keys.get("manifest", ""), keys.get("calibration"))


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def stage_keys(spec, backend: str, weights_key: str, versions: dict, record: dict | None = None,
               calibration: dict | None = None) -> dict[str, str]:
    """Cache keys: export depends on the weights' content and the exporter versions; the int8 calibration (when
    ``calibration``, the set's contents and method, is given) on the export, the set and the plan; engines on
    all that and everything else; the manifest on the engines and on what it records beyond them (``record``:
    which weights file, which class names), so a change there writes a new manifest while reusing the rest."""
    model = {"tool": __version__, "weights": weights_key, **{k: versions.get(k) for k in _EXPORT_LIBRARIES}}
    outputs = getattr(spec, "outputs", "logits")
    if outputs != "logits":  # named only for feature builds, so a logits build keeps the key it always had
        model["outputs"] = outputs
    export = _digest(model)
    calibration_key = None
    if calibration is not None:
        from rsz_export.backends import load_backend

        calibration_key = _digest({"export": export, "set": calibration, "plan": spec.plan.to_dict(),
                                   "tool": __version__, "onnxruntime": versions.get("onnxruntime"),
                                   "judged_on": load_backend(backend).int8_model().name})  # the placement's model
    # Where the timing cache and the calibration file lie is not what they hold: their keys cover that.
    options = {k: v for k, v in asdict(spec.options).items() if k not in ("timing_cache", "calibration")}
    engines = {"export": export, "backend": backend, "plan": spec.plan.to_dict(), "options": options,
               "versions": versions}
    if calibration_key is not None:
        engines["calibration"] = calibration_key
    engines_key = _digest(engines)
    manifest = _digest({"engines": engines_key, **(record or {})})
    return StageKeys(export, engines_key, manifest, calibration_key)


def onnx_name(keys: StageKeys) -> str:
    """The export's file name in the build folder."""
    return ONNX_PATTERN.format(key=keys.export[:KEY_CHARS])


def labels_name(sha256: str) -> str:
    """The file name of a build's class names, from the sha256 of their stored text."""
    return LABELS_PATTERN.format(key=sha256[:KEY_CHARS])


def ranges_key(calibration: dict, onnx_sha256: str, plan: dict, onnxruntime_version: str | None) -> str:
    """What the calibrated ranges alone depend on: the export's bytes, the calibration set (``key_data``) without
    the held-out images and the target (which only the placement reads), the plan and the versions."""
    data = {k: v for k, v in calibration.items() if k not in ("holdout", "target")}
    return _digest({"onnx": onnx_sha256, "set": data, "plan": plan, "tool": __version__,
                    "onnxruntime": onnxruntime_version})


def calibration_name(keys: StageKeys) -> str:
    """The file name of the calibrated ranges in the build folder."""
    return CALIBRATION_PATTERN.format(key=keys.calibration[:KEY_CHARS])


def engine_dir_name(backend: str, keys: StageKeys) -> str:
    """The folder holding one backend's engines in the build folder."""
    return ENGINE_DIR_PATTERN.format(backend=backend, key=keys.engines[:KEY_CHARS])
