"""The torchvision ResNet-50 and its weights: the only place that knows where weights come from.

Weights are one of:
  imagenet1k-v1 / imagenet1k-v2  torchvision's checkpoints (1000 ImageNet classes), from the local torch hub
                                 cache, downloaded there when the network allows (hash-checked);
  random                         seeded and deterministic on any machine (numpy's PCG64), with BatchNorm
                                 statistics calibrated so activations and logits look like a trained network's,
                                 and a head of ``num_classes`` classes (1000 unless asked otherwise);
  a path                         a checkpoint as training scripts save it (``checkpoint``: a bare or wrapped
                                 state_dict, DataParallel prefixes, safetensors) with any head size, read with
                                 ``torch.load(weights_only=True)``: pickled code is refused, never executed.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from rsz_export.artifacts.files import sha256_file
from rsz_export.artifacts.manifest import WeightsRecord
from rsz_export.errors import EnvironmentProblem, IntegrityError, RszError, UsageError, check_int
from rsz_export.interface import DEFAULT_OUTPUTS, MAX_NUM_CLASSES, NUM_CLASSES

PRETRAINED = {
    "imagenet1k-v1": "resnet50-0676ba61.pth",
    "imagenet1k-v2": "resnet50-11ad3fa6.pth",
}
DEFAULT_WEIGHTS = "imagenet1k-v2"
WEIGHTS_CHOICES = (*PRETRAINED, "random")
DOWNLOAD_ROOT = "https://download.pytorch.org/models/"
_CALIBRATION_SIZE = 160
_LAST_BN_GAMMA = 0.2  # trained ResNets keep each block's last BN gain small; the residual stream stays bounded
_LOGIT_STD = 3.0  # spread of logits across classes, as a trained ImageNet classifier shows


@dataclass(frozen=True)
class WeightsChoice:
    """The weights a build starts from, named before anything is written.

    ``key`` changes whenever the exported model would: seed and head size for random weights, the checkpoint
    name for pretrained ones, and for a file the sha256 of its tensors (not of the file), so every wrapping of
    the same weights (bare, in a training checkpoint, DDP-prefixed, safetensors) shares one export.
    ``record`` is known up front for a file (its hashes); otherwise it is made when the weights are loaded.
    """

    spec: str
    key: str
    num_classes: int
    record: WeightsRecord | None = None


def hub_checkpoint_dir() -> Path:
    """torch.hub's checkpoint folder, computed as torch does, without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def check_num_classes(num_classes: int | None) -> int | None:
    """``num_classes`` when it is None or a whole number in 1..MAX_NUM_CLASSES; UsageError otherwise."""
    return None if num_classes is None else check_int(num_classes, "--num-classes", 1, MAX_NUM_CLASSES)


def _check_head(num_classes: int | None, actual: int, what: str) -> None:
    if num_classes is not None and num_classes != actual:
        raise UsageError(
            f"--num-classes {num_classes} does not match {what}, which has {actual} classes",
            hint="leave --num-classes out: the weights' head (fc.weight's rows) sets the class count; "
            "--num-classes chooses the head of --weights random",
        )


def _existing_file(spec: str) -> Path:
    path = Path(spec)
    if not path.is_file():
        raise UsageError(
            f"--weights {spec!r} is neither one of {', '.join(WEIGHTS_CHOICES)} nor an existing file",
            hint="give a checkpoint file, e.g. saved with torch.save(model.state_dict(), PATH)",
        )
    return path


def random_key(seed: int, num_classes: int) -> str:
    """The export key's name for seeded weights (unchanged for the default head, so older exports are reused)."""
    return f"random:seed={seed}" if num_classes == NUM_CLASSES else f"random:seed={seed}:classes={num_classes}"


def choose_weights(
    spec: str, seed: int = 0, num_classes: int | None = None, known: WeightsRecord | None = None,
    outputs: str = DEFAULT_OUTPUTS,
) -> WeightsChoice:
    """Name the weights ``spec`` stands for and their class count, checking ``num_classes`` against them.

    For a file this reads it (to hash its tensors and read its head) unless ``known``, a record of an earlier
    build, describes a file with the same sha256. For ``outputs`` other than logits the class count is 0 (no
    classes) and a file's key is the content of the backbone's tensors it holds.
    """
    check_num_classes(num_classes)
    feature = outputs != DEFAULT_OUTPUTS
    if feature and spec in WEIGHTS_CHOICES and outputs == "fpn":
        raise no_fpn_weights(spec)
    if spec == "random":
        classes = num_classes or NUM_CLASSES
        return WeightsChoice(spec, random_key(seed, classes), 0 if feature else classes)
    if spec in PRETRAINED:
        _check_head(num_classes, NUM_CLASSES, f"--weights {spec} (ImageNet)")
        return WeightsChoice(spec, f"{spec}:{PRETRAINED[spec]}", 0 if feature else NUM_CLASSES)
    path = _existing_file(spec)
    if known is not None and known.id == "file" and known.content_sha256 and known.sha256 == sha256_file(path):
        record = replace(known, source=str(path.resolve()), warning=None)
    else:
        record = resolve_weights(spec, seed, outputs=outputs)[1]
    if not feature:
        _check_head(num_classes, record.num_classes, f"the checkpoint {path}")
    return WeightsChoice(spec, f"state:{record.content_sha256}", 0 if feature else record.num_classes, record)


def no_fpn_weights(spec: str) -> RszError:
    if spec == "random":
        return UsageError(
            "--outputs fpn needs a detector's checkpoint: seeded random weights have no feature pyramid",
            hint="give --weights PATH of a torchvision detection checkpoint (e.g. fasterrcnn_resnet50_fpn), or use "
            "--outputs features with --weights random",
        )
    return IntegrityError(
        f"--weights {spec} has no FPN weights: torchvision's {spec} ResNet-50 is an ImageNet classifier",
        hint="give --weights PATH of a torchvision detection checkpoint (e.g. fasterrcnn_resnet50_fpn), or build "
        "the body's stage outputs with --outputs features",
    )


def default_weights(seed: int = 0, num_classes: int | None = None) -> tuple[str, str | None]:
    """(weights spec, warning) when none is given: ImageNet weights when cached or downloadable, else seeded
    random weights with a warning saying the outputs are not ImageNet predictions. A head of another size than
    ImageNet's is a UsageError: it needs ``--weights random`` (or a checkpoint)."""
    if check_num_classes(num_classes) not in (None, NUM_CLASSES):
        raise UsageError(
            f"--num-classes {num_classes} needs --weights random: the default weights are ImageNet's "
            f"({NUM_CLASSES} classes)",
            hint="for a fine-tuned model give its checkpoint with --weights PATH (its head sets the class count)",
        )
    try:
        pretrained_path(DEFAULT_WEIGHTS)
        return DEFAULT_WEIGHTS, None
    except EnvironmentProblem as exc:
        return "random", (
            f"default weights {DEFAULT_WEIGHTS} unavailable ({exc.message}); built with seeded random weights "
            f"(seed {seed}): outputs are NOT ImageNet predictions. Put {PRETRAINED[DEFAULT_WEIGHTS]} in the "
            "torch hub cache and rebuild with --force for real weights"
        )


def resolve_weights(
    spec: str, seed: int = 0, allow_download: bool = True, num_classes: int | None = None,
    outputs: str = DEFAULT_OUTPUTS, log=lambda message: None,
) -> tuple[dict, WeightsRecord]:
    """Load (or generate) the state_dict named by ``spec`` and describe it; for ``outputs`` other than logits, the
    state_dict of that backbone model (``model.backbone``)."""
    from rsz_export.model.checkpoint import checkpoint_state, num_classes_of, read_file

    check_num_classes(num_classes)
    feature = outputs != DEFAULT_OUTPUTS
    if spec == "random":
        if outputs == "fpn":
            raise no_fpn_weights(spec)
        classes = num_classes or NUM_CLASSES
        state = random_state_dict(seed, classes)
        sha = state_dict_sha256(state)
        record = WeightsRecord("random", sha, f"numpy PCG64 seed {seed}", seed, None, sha, classes)
        return (_backbone_of(state, outputs, spec) if feature else state), record
    path = pretrained_path(spec, allow_download) if spec in PRETRAINED else _existing_file(spec)
    data = read_file(path)
    state = checkpoint_state(data, path, outputs, log)
    classes = 0 if feature else num_classes_of(state)
    if not feature:
        _check_head(num_classes, classes, f"--weights {spec}")
    sha = hashlib.sha256(data).hexdigest()
    if spec in PRETRAINED:
        return state, WeightsRecord(spec, sha, str(path), num_classes=NUM_CLASSES)
    record = WeightsRecord("file", sha, str(path.resolve()), content_sha256=state_dict_sha256(state),
                           num_classes=classes)
    return state, record


def _backbone_of(state: dict, outputs: str, source: str) -> dict:
    from rsz_export.model.backbone import backbone_state

    return backbone_state(state, outputs, source)


def pretrained_path(spec: str, allow_download: bool = True) -> Path:
    """The cached checkpoint for ``spec``, downloading it when missing and the network allows."""
    path = hub_checkpoint_dir() / PRETRAINED[spec]
    if path.is_file():
        return path
    problem = "downloads are disabled"
    if allow_download:
        try:
            _download(DOWNLOAD_ROOT + PRETRAINED[spec], path)
            return path
        except OSError as exc:
            problem = f"download failed: {exc}"
    raise EnvironmentProblem(
        f"weights {spec} are not in the local torch hub cache and {problem}",
        hint=f"put {PRETRAINED[spec]} from {DOWNLOAD_ROOT} at {path}, or use --weights random",
    )


def _download(url: str, path: Path) -> None:
    """Fetch ``url`` to ``path`` atomically, checking the sha256 prefix torchvision puts in the name."""
    import urllib.request

    from rsz_export.artifacts.files import atomic_path

    expected = path.stem.rsplit("-", 1)[-1]
    with atomic_path(path) as tmp:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        if not sha256_file(tmp).startswith(expected):
            raise OSError(f"{url} did not match its published hash prefix {expected}")


def build_model(state_dict: dict, source: str = "weights", outputs: str = DEFAULT_OUTPUTS):
    """A float32 CPU ResNet-50 in eval mode carrying ``state_dict`` (any head size), or for ``outputs`` other than
    logits the backbone model giving those feature maps (``model.backbone``); IntegrityError if the keys do not
    fit."""
    import torchvision

    if outputs != DEFAULT_OUTPUTS:
        from rsz_export.model.backbone import build_backbone

        return build_backbone(state_dict, outputs, source)
    from rsz_export.model.checkpoint import num_classes_of

    model = torchvision.models.resnet50(weights=None, num_classes=num_classes_of(state_dict) or NUM_CLASSES)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()
        raise IntegrityError(f"{source} is not a ResNet-50 state_dict: {' '.join(detail[:3])[:400]}") from None
    return model.float().eval()


def state_dict_sha256(state_dict: dict) -> str:
    """A sha256 over names, dtypes, shapes and bytes, in key order: the identity of generated weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def reference_from_record(record: WeightsRecord, out_dir: str | Path | None = None, outputs: str = DEFAULT_OUTPUTS):
    """Rebuild the PyTorch model a manifest was built from (giving ``outputs``), verifying the weights' sha256
    before deserialising them (the very bytes that were hashed are the ones read)."""
    from rsz_export.model.checkpoint import checkpoint_state, read_file

    state = None
    if record.id == "random":
        state = random_state_dict(int(record.seed or 0), record.num_classes)
        actual = state_dict_sha256(state)
    else:
        path = pretrained_path(record.id) if record.id in PRETRAINED else Path(record.source)
        data = read_file(path)
        actual = hashlib.sha256(data).hexdigest()
    if actual != record.sha256:
        raise IntegrityError(
            f"weights {record.id} ({record.source}) no longer match the manifest "
            f"(sha256 {actual[:12]}..., recorded {record.sha256[:12]}...)",
            hint="rebuild the engines from these weights: rsz-export build --force",
        )
    if outputs != DEFAULT_OUTPUTS:
        state = _backbone_of(state, outputs, "random") if state is not None else checkpoint_state(data, path, outputs)
        return build_model(state, record.source, outputs)
    return build_model(state if state is not None else checkpoint_state(data, path), source=record.source)


def random_state_dict(seed: int, num_classes: int = NUM_CLASSES) -> dict:
    """Seeded ResNet-50 weights with a ``num_classes`` head that behave like a trained network's (see the
    module docstring).

    Generating them costs a float64 forward pass (seconds), so a process keeps the last two; callers get their
    own dict, and load_state_dict copies the tensors into the model, so nothing shared is mutated.
    """
    return dict(_generated(seed, num_classes))


@functools.lru_cache(maxsize=2)
def _generated(seed: int, num_classes: int) -> dict:
    from rsz_export.model.random_init import calibrated_state_dict

    return calibrated_state_dict(seed, _CALIBRATION_SIZE, _LAST_BN_GAMMA, _LOGIT_STD, num_classes)
