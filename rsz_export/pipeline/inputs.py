"""What a build is made from, resolved and checked before anything is written: the weights (named by what
they hold), the class count, and the class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rsz_export.artifacts.manifest import Manifest
from rsz_export.errors import UsageError
from rsz_export.model.labels import check_count, labels_text, read_labels
from rsz_export.model.weights import WeightsChoice, check_num_classes, choose_weights, default_weights
from rsz_export.pipeline.onnx_import import ImportedOnnx, check_import


@dataclass(frozen=True)
class BuildInputs:
    """The resolved inputs of a build.

    ``weights`` is None only for an imported ONNX whose own metadata names its weights. ``names`` are the
    ``--labels`` class names (None: the defaults), ``labels_sha256`` the sha256 of that file's bytes.
    """

    weights: WeightsChoice | None
    warning: str | None
    imported: ImportedOnnx | None
    num_classes: int
    names: tuple[str, ...] | None = None
    labels_source: Path | None = None
    labels_sha256: str | None = None

    @property
    def weights_key(self) -> str:
        """What the export stage's key names: the weights, or the imported file together with its weights."""
        if self.imported is None:
            return self.weights.key
        chosen = self.weights.key if self.weights is not None else f"meta:{self.imported.weights.sha256}"
        return f"onnx:{self.imported.sha256}|{chosen}"

    def recorded(self) -> dict:
        """What the manifest records beyond its stages' outputs: which weights file, which class names."""
        record = self.weights.record if self.weights is not None else None
        return {
            "weights_file": None if record is None else f"{record.sha256}:{record.source}",
            "labels": None if self.names is None else [labels_text(self.names), str(self.labels_source)],
        }


def _head(inputs_weights: WeightsChoice | None, imported: ImportedOnnx | None) -> str:
    """Where the class count came from, for messages."""
    if imported is not None:
        return f"--onnx {imported.path} gives logits [batch,{imported.num_classes}]"
    if inputs_weights.record is not None:
        return f"fc.weight in {inputs_weights.spec} has {inputs_weights.num_classes} rows"
    return f"--weights {inputs_weights.spec} has a {inputs_weights.num_classes}-class head"


def _weights_spec(spec) -> tuple[str | None, str | None]:
    """(weights spec, warning): the given one, else the default (none for an ONNX naming its own)."""
    if spec.weights is not None or spec.onnx is not None:
        return spec.weights, None
    return default_weights(spec.seed, spec.num_classes)


def resolve_inputs(spec, previous: Manifest | None = None) -> BuildInputs:
    """Resolve and cross-check weights, ONNX, class count and names; UsageError (exit 2) or IntegrityError
    (exit 4) before anything is written. ``previous``: a manifest whose records may name the same weights file
    (then it is not read again)."""
    check_num_classes(spec.num_classes)
    names, labels_sha = read_labels(spec.labels) if spec.labels is not None else (None, None)
    imported = check_import(spec) if spec.onnx is not None else None
    weights_spec, warning = _weights_spec(spec)
    if imported is not None and spec.num_classes not in (None, imported.num_classes):
        raise UsageError(f"--num-classes {spec.num_classes} does not match --onnx {imported.path}, which gives "
                         f"logits [batch,{imported.num_classes}]")
    choice = None
    if weights_spec is not None:
        fit = imported is not None and weights_spec == "random"  # a seeded reference sized to the ONNX
        same_model = previous is not None and previous.outputs == spec.outputs
        known = previous.weights if same_model else None
        classes = imported.num_classes if fit and imported.num_classes else spec.num_classes
        choice = choose_weights(weights_spec, spec.seed, classes, known, spec.outputs)
    num_classes = imported.num_classes if imported is not None else choice.num_classes
    if imported is not None and choice is not None and choice.num_classes != num_classes:
        raise UsageError(
            f"--onnx {imported.path} gives {num_classes} classes but --weights {choice.spec} have "
            f"{choice.num_classes}", hint="give the weights the ONNX was exported from"
        )
    if names is not None:
        check_count(names, num_classes, f"--labels {spec.labels}", _head(choice, imported))
    labels_source = None if spec.labels is None else Path(spec.labels).resolve()
    return BuildInputs(choice, warning, imported, num_classes, names, labels_source, labels_sha)
