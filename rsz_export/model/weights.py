"""The torchvision ResNet-50 and its weights: the only place that knows where weights come from.

Weights are one of:
  imagenet1k-v1 / imagenet1k-v2  torchvision's checkpoints, from the local torch hub cache, downloaded
                                 there when the network allows (hash-checked);
  random                         seeded and deterministic on any machine (numpy's PCG64), with BatchNorm
                                 statistics calibrated so activations and logits look like a trained network's;
  a path                         a state_dict file, loaded with ``torch.load(weights_only=True)``: a file
                                 carrying pickled Python objects beyond tensors is refused, never executed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import warnings
from pathlib import Path

from rsz_export.artifacts.files import sha256_file
from rsz_export.artifacts.manifest import WeightsRecord
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError

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


def hub_checkpoint_dir() -> Path:
    """torch.hub's checkpoint folder, computed as torch does, without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def weights_identity(spec: str, seed: int) -> str:
    """A cheap string that changes whenever the weights would (no torch, no hashing of generated tensors)."""
    if spec == "random":
        return f"random:seed={seed}"
    if spec in PRETRAINED:
        return f"{spec}:{PRETRAINED[spec]}"
    path = Path(spec)
    if not path.is_file():
        raise UsageError(
            f"--weights {spec!r} is neither one of {', '.join(WEIGHTS_CHOICES)} nor an existing file",
            hint="give a state_dict file saved with torch.save(model.state_dict(), PATH)",
        )
    return f"file:{sha256_file(path)}"


def default_weights(seed: int = 0) -> tuple[str, str | None]:
    """(weights spec, warning) when none is given: ImageNet weights when cached or downloadable, else seeded
    random weights with a warning saying the outputs are not ImageNet predictions."""
    try:
        pretrained_path(DEFAULT_WEIGHTS)
        return DEFAULT_WEIGHTS, None
    except EnvironmentProblem as exc:
        return "random", (
            f"default weights {DEFAULT_WEIGHTS} unavailable ({exc.message}); built with seeded random weights "
            f"(seed {seed}): outputs are NOT ImageNet predictions. Put {PRETRAINED[DEFAULT_WEIGHTS]} in the "
            "torch hub cache and rebuild with --force for real weights"
        )


def resolve_weights(spec: str, seed: int = 0, allow_download: bool = True) -> tuple[dict, WeightsRecord]:
    """Load the state_dict named by ``spec`` and describe it."""
    if spec == "random":
        state = random_state_dict(seed)
        return state, WeightsRecord("random", state_dict_sha256(state), f"numpy PCG64 seed {seed}", seed=seed)
    if spec in PRETRAINED:
        path = pretrained_path(spec, allow_download)
        return load_state_dict_file(path), WeightsRecord(spec, sha256_file(path), str(path))
    weights_identity(spec, seed)  # raises a UsageError for a path that is not a file
    state = load_state_dict_file(Path(spec))
    return state, WeightsRecord("file", sha256_file(spec), str(Path(spec).resolve()))


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


def load_state_dict_file(path: str | Path) -> dict:
    """Load a state_dict safely (tensors only) and check it fits ResNet-50; IntegrityError otherwise."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"weights file {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:Unsupported global|Unsupported operand|unsupported)[^\n.]*", str(exc))
        what = found.group(0).strip() if found else "a pickled object that is not a tensor"
        raise IntegrityError(
            f"refused to load {path}: it carries Python objects beyond tensors ({what})",
            hint="re-save it with torch.save(model.state_dict(), PATH); rsz-export never unpickles code",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise IntegrityError(f"weights file {path} is corrupt or not a PyTorch file: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise IntegrityError(f"weights file {path} does not hold a state_dict of tensors")
    build_model(state, source=str(path))
    return state


def build_model(state_dict: dict, source: str = "weights"):
    """A float32 CPU ResNet-50 in eval mode carrying ``state_dict``; IntegrityError if the keys do not fit."""
    import torchvision

    model = torchvision.models.resnet50(weights=None)
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


def reference_from_record(record: WeightsRecord, out_dir: str | Path | None = None):
    """Rebuild the PyTorch model a manifest was built from, verifying the weights' sha256 first."""
    if record.id == "random":
        state = random_state_dict(int(record.seed or 0))
        actual = state_dict_sha256(state)
    else:
        path = pretrained_path(record.id) if record.id in PRETRAINED else Path(record.source)
        actual = sha256_file(path)
        if actual == record.sha256:
            state = load_state_dict_file(path)
    if actual != record.sha256:
        raise IntegrityError(
            f"weights {record.id} ({record.source}) no longer match the manifest "
            f"(sha256 {actual[:12]}..., recorded {record.sha256[:12]}...)",
            hint="rebuild the engines from these weights: rsz-export build --force",
        )
    return build_model(state, source=record.source)


def random_state_dict(seed: int) -> dict:
    """Seeded ResNet-50 weights that behave like a trained network's (see module docstring).

    Generating them costs a float64 forward pass (seconds), so a process keeps the last two seeds; callers
    get their own dict, and load_state_dict copies the tensors into the model, so nothing shared is mutated.
    """
    return dict(_generated(seed))


@functools.lru_cache(maxsize=2)
def _generated(seed: int) -> dict:
    from rsz_export.model.random_init import calibrated_state_dict

    return calibrated_state_dict(seed, _CALIBRATION_SIZE, _LAST_BN_GAMMA, _LOGIT_STD)
