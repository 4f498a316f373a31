"""Reading a ResNet-50 checkpoint as training scripts save it, without executing anything from it.

Accepted: a bare state_dict; a dict holding it under ``state_dict``, ``model``, ``model_state_dict`` or
``weights`` beside other entries (epoch, optimizer state, hyper-parameters); keys prefixed by ``module.``
(DataParallel/DDP) or ``model.`` (wrapper modules), removed; ``.safetensors`` files. ``.pt``/``.pth`` files
are read with ``torch.load(weights_only=True)``: tensors and plain containers only (plus ``argparse.Namespace``,
as torchvision's reference training script saves its arguments), pickled code refused.

The result is checked against torchvision's ResNet-50 layout with the head the checkpoint has (``fc.weight``'s
rows are the class count): anything else is an IntegrityError (exit 4) listing the keys found and every tensor
that is missing, unexpected or of the wrong shape.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path

from rsz_export.errors import EnvironmentProblem, IntegrityError, shown
from rsz_export.interface import DEFAULT_OUTPUTS, Log

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "weights")
"""Entries of a training checkpoint that may hold the model's state_dict, in the order they are tried."""
PREFIXES = ("module.", "model.")
"""Key prefixes of wrapped modules (DataParallel/DDP, wrapper modules), removed when every key has one."""
SAFETENSORS_SUFFIX = ".safetensors"
_SHOWN = 5  # names listed per kind of mismatch
_BATCHNORM_COUNTER = "num_batches_tracked"  # a training counter; eval ignores it, some converters drop it


def _listed(names, limit: int = _SHOWN) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_file(path: str | Path) -> bytes:
    """A weights file's bytes, read once: callers hash them and deserialise the very bytes they checked."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"weights file {path} does not exist") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read weights file {path}: {exc.strerror or exc}") from None


def _allowed_globals():
    """Let ``weights_only`` rebuild ``argparse.Namespace`` (torchvision's reference training script stores its
    arguments as one): a bag of attributes restored without calling any of its code. Nothing else is added."""
    import argparse

    import torch

    safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    return safe([argparse.Namespace]) if safe is not None else contextlib.nullcontext()


def _from_torch(data: bytes, path: Path):
    """``torch.load(weights_only=True)``, its refusals and failures turned into IntegrityErrors."""
    import io
    import pickle

    import torch

    try:
        with warnings.catch_warnings(), _allowed_globals():  # torch warns about the protocol of a file it refuses
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:Unsupported global|Unsupported operand|unsupported)[^\n]*?(?=\s+was not|\.(?:\s|$)|$)",
                          str(exc), re.M)
        what = found.group(0).strip() if found else "a pickled object that is not a tensor"
        raise IntegrityError(
            f"refused to load {path}: it carries Python objects beyond tensors ({what})",
            hint="re-save it with torch.save(model.state_dict(), PATH) (hyper-parameters as a plain dict); "
            "rsz-export never unpickles code",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise IntegrityError(
            f"weights file {path} is corrupt, truncated or not a PyTorch file: "
            + (str(exc).splitlines() or [""])[0].split(". ")[0][:300]
        ) from None


def _from_safetensors(data: bytes, path: Path) -> dict:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load as safetensors_load
    except ImportError:
        raise EnvironmentProblem(
            f"{path} is a safetensors file and the safetensors package is not installed",
            hint="pip install safetensors",
        ) from None
    try:
        return safetensors_load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise IntegrityError(f"weights file {path} is corrupt, truncated or not a safetensors file: {exc}") from None


def _is_safetensors(data: bytes, path: Path) -> bool:
    """By name, or by content: a little-endian 8-byte header length that fits the file, then the header's ``{``."""
    if path.suffix == SAFETENSORS_SUFFIX:
        return True
    return len(data) > 9 and data[8:9] == b"{" and 0 < int.from_bytes(data[:8], "little") <= len(data) - 8


def _tensor_dict(value) -> bool:
    import torch

    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _unwrap(loaded, path: Path) -> tuple[dict, str]:
    """The state_dict inside what the file holds, and where it was found (for messages)."""
    if _tensor_dict(loaded):
        return dict(loaded), "the file's top level"
    if isinstance(loaded, dict):
        for key in WRAPPER_KEYS:
            if _tensor_dict(loaded.get(key)):
                return dict(loaded[key]), f"its {key!r} entry"
        raise IntegrityError(
            f"weights file {path} holds no state_dict: its keys are {_listed(map(repr, loaded), 12) or 'none'}",
            hint="save torch.save(model.state_dict(), PATH), or a dict with the state_dict under one of "
            + ", ".join(repr(k) for k in WRAPPER_KEYS),
        )
    raise IntegrityError(
        f"weights file {path} holds a {type(loaded).__name__}, not a state_dict of tensors",
        hint="save it with torch.save(model.state_dict(), PATH)",
    )


def strip_prefixes(state: dict) -> dict:
    """Keys without the ``module.``/``model.`` prefixes that every key carries (repeatedly: ``module.model.``)."""
    while state:
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def num_classes_of(state: dict) -> int | None:
    """The class count of a ResNet-50 state_dict: ``fc.weight``'s rows (None when it has no 2-D fc.weight)."""
    weight = state.get("fc.weight")
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 and weight.shape[0] >= 1 else None


def expected_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every tensor name of torchvision's ResNet-50 with a ``num_classes`` head, and its shape (no memory used)."""
    import torch
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def layout_problems(state: dict) -> list[str]:
    """How ``state`` differs from torchvision's ResNet-50 with its own head size (empty list: it fits)."""
    classes = num_classes_of(state)
    expected = expected_shapes(classes or 1)
    optional = {k for k in expected if k.endswith(_BATCHNORM_COUNTER)}
    missing = [k for k in expected if k not in state and k not in optional]
    if classes is None:
        missing = ["fc.weight (2-D, [classes, 2048])"] + [k for k in missing if not k.startswith("fc.")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {list(state[k].shape)}, expected {list(shape)}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape and not (k == "fc.weight" and classes is None)
    ]
    problems = []
    for kind, names in (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", wrong)):
        if names:
            problems.append(f"{len(names)} {kind}: {_listed(names)}")
    return problems


def _complete(state: dict) -> dict:
    """``state`` with the BatchNorm counters some converters drop (zero, as a fresh model has)."""
    import torch

    counters = {k: torch.tensor(0) for k in expected_shapes(num_classes_of(state) or 1)
                if k.endswith(_BATCHNORM_COUNTER) and k not in state}
    return {**state, **counters}


def non_finite_tensors(state: dict) -> list[str]:
    """The floating-point tensors of ``state`` holding a NaN or an infinity, each with how many of each."""
    import torch

    found = []
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nan = int(torch.isnan(tensor).sum())
            found.append(f"{name} ({nan} NaN, {tensor.numel() - nan - int(torch.isfinite(tensor).sum())} Inf)")
    return found


def _check_finite(state: dict, path: Path) -> None:
    bad = non_finite_tensors(state)
    if bad:
        raise IntegrityError(
            f"weights file {shown(path)} holds NaN or infinite values in {len(bad)} tensor(s): {_listed(bad)}",
            hint="a training run that diverged leaves such weights: give a checkpoint saved before it did",
        )


def checkpoint_state(data: bytes, path: str | Path, outputs: str = DEFAULT_OUTPUTS, log: Log = lambda m: None) -> dict:
    """The ResNet-50 state_dict in a checkpoint file's bytes (see the module docstring); IntegrityError otherwise,
    and for a tensor holding NaN or infinite values. For ``outputs`` other than logits: the state_dict of that
    backbone model, from a classifier or detector checkpoint (``model.backbone``; ``log`` lists the heads left out)."""
    path = Path(path)
    loaded = _from_safetensors(data, path) if _is_safetensors(data, path) else _from_torch(data, path)
    raw, where = _unwrap(loaded, path)
    state = strip_prefixes(raw)
    if outputs != DEFAULT_OUTPUTS:
        from rsz_export.model.backbone import backbone_state

        state = backbone_state(state, outputs, path, log)
        _check_finite(state, path)
        return state
    problems = layout_problems(state)
    if problems:
        top = where == "the file's top level"
        keys = f"{len(raw)} tensors ({_listed(raw, 8)})" if top else f"the keys {_listed(map(repr, loaded), 12)}"
        removed = " (after removing the key prefix)" if state.keys() != raw.keys() else ""
        raise IntegrityError(
            f"{path} is not a torchvision ResNet-50 checkpoint. The file holds {keys}; the tensors in {where}"
            f"{removed} do not fit ResNet-50: " + "; ".join(problems),
            hint="this is a detector's checkpoint (its backbone is under backbone.*): build its feature maps with "
            "--outputs fpn (or --outputs features)" if any(k.startswith("backbone.") for k in state) else
            "give a ResNet-50 (torchvision.models.resnet50) checkpoint; any head size is fine",
        )
    _check_finite(state, path)  # found as the file is read, before anything is exported or written
    return _complete(state)


def load_checkpoint(path: str | Path, outputs: str = DEFAULT_OUTPUTS) -> dict:
    """The ResNet-50 state_dict (of the ``outputs`` model) in the checkpoint file at ``path``."""
    return checkpoint_state(read_file(path), path, outputs)
