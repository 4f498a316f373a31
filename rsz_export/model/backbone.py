"""ResNet-50 as a backbone: feature maps instead of logits (``--outputs features|fpn``).

``features``: the body's stage outputs ``layer1..layer4`` (strides 4, 8, 16, 32; 256..2048 channels), as
torchvision's ``IntermediateLayerGetter`` returns them, from any ResNet-50 checkpoint: a classifier (its head is
dropped) or a detector (its ``backbone.body``).

``fpn``: torchvision's ``BackboneWithFPN`` exactly as its detectors build it (the body with
``FrozenBatchNorm2d``, the ``FeaturePyramidNetwork`` over layer1..layer4 with 256 channels and the extra max-pool
level): outputs ``0``, ``1``, ``2``, ``3`` and ``pool`` (strides 4..64), from a torchvision detection checkpoint
(Faster/Mask R-CNN, RetinaNet: keys ``backbone.body.*`` and ``backbone.fpn.*``). The detector's heads (``rpn``,
``roi_heads``, ``head``...) are not part of the engine; they are listed in the build log.
"""

from __future__ import annotations

from pathlib import Path

from rsz_export.errors import IntegrityError
from rsz_export.interface import FEATURE_CHANNELS, FEATURE_NAMES, FPN_CHANNELS, FPN_NAMES, Log, output_names

BACKBONE_PREFIX = "backbone."
BODY_PREFIX = "backbone.body."
FPN_PREFIX = "backbone.fpn."
_RESNET_DEPTHS = {(3, 4, 6, 3): "a ResNet-34 or a ResNet-50 variant", (3, 4, 23, 3): "a ResNet-101",
                  (3, 8, 36, 3): "a ResNet-152", (2, 2, 2, 2): "a ResNet-18"}
_SHOWN = 5


def _listed(names) -> str:
    names = list(names)
    return ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def is_detector(state: dict) -> bool:
    """Whether a (prefix-stripped) state_dict is a torchvision detector's: its backbone under ``backbone.``."""
    return any(k.startswith(BACKBONE_PREFIX) for k in state)


def _body_shapes() -> dict[str, tuple[int, ...]]:
    import torch
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None, num_classes=1)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("fc.")}


def _fpn_shapes() -> dict[str, tuple[int, ...]]:
    import torch
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

    with torch.device("meta"):
        fpn = FeaturePyramidNetwork(list(FEATURE_CHANNELS), FPN_CHANNELS, extra_blocks=LastLevelMaxPool())
    return {name: tuple(tensor.shape) for name, tensor in fpn.state_dict().items()}


def _problems(state: dict, expected: dict, optional=lambda name: name.endswith("num_batches_tracked")) -> list[str]:
    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)}, expected {list(s)}" for k, s in expected.items()
             if k in state and tuple(state[k].shape) != s]
    return [f"{len(names)} {kind}: {_listed(names)}" for kind, names in
            (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", wrong)) if names]


def _which_network(body: dict) -> str:
    """What a detector's body looks like, for messages: a ResNet's depth from its block counts, else its keys."""
    blocks = []
    for stage in range(1, 5):
        found = {k.split(".")[1] for k in body if k.startswith(f"layer{stage}.")}
        blocks.append(len(found))
    if any(blocks):
        name = _RESNET_DEPTHS.get(tuple(blocks), f"a ResNet with {blocks} blocks per stage")
        return f"{name} ({'/'.join(map(str, blocks))} blocks in layer1..layer4)"
    return f"not a ResNet (its tensors are named {_listed(list(body)[:3])}: a MobileNet or another network)"


def backbone_state(state: dict, outputs: str, path: str | Path, log: Log = lambda message: None) -> dict:
    """The state_dict of the ``outputs`` model (``features``: the body's keys, ``conv1.*`` .. ``layer4.*``;
    ``fpn``: ``body.*`` and ``fpn.*`` as ``BackboneWithFPN`` names them) from a prefix-stripped classifier or
    detector state_dict. IntegrityError (exit 4) for a detector whose backbone is not ResNet-50, for FPN weights
    asked of a classifier, and for layouts that do not fit."""
    path = Path(path)
    if not is_detector(state):
        if outputs == "fpn":
            raise IntegrityError(
                f"{path} has no FPN weights: it holds a classifier ({len(state)} tensors: {_listed(state)}), and "
                "--outputs fpn takes the feature pyramid's trained weights from a detection checkpoint "
                "(keys backbone.body.* and backbone.fpn.*)",
                hint="give a torchvision detector's checkpoint (fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, "
                "retinanet_resnet50_fpn), or build the body's stage outputs from this one with --outputs features",
            )
        body, fpn, heads = {k: v for k, v in state.items() if not k.startswith("fc.")}, {}, []
        where = "the checkpoint"
    else:
        body = {k[len(BODY_PREFIX):]: v for k, v in state.items() if k.startswith(BODY_PREFIX)}
        fpn = {k[len(FPN_PREFIX):]: v for k, v in state.items() if k.startswith(FPN_PREFIX)}
        heads = sorted({k.split(".")[0] for k in state if not k.startswith(BACKBONE_PREFIX)})
        where = "the detector's backbone.body"
    problems = _problems(body, _body_shapes())
    if problems:
        kind = f"its backbone is {_which_network(body)}" if is_detector(state) else "its tensors do not fit"
        raise IntegrityError(
            f"{path} is not a ResNet-50 backbone: {kind}. The tensors in {where} differ from torchvision's "
            "ResNet-50 body: " + "; ".join(problems),
            hint="rsz-export builds ResNet-50 only: give a checkpoint of a ResNet-50 classifier or of a detector "
            "built on ResNet-50 (fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, retinanet_resnet50_fpn)",
        )
    if heads:
        counts = ", ".join(f"{h} ({sum(k.startswith(h + '.') for k in state)} tensors)" for h in heads)
        log(f"the detector's heads are not part of the {outputs} model and were left out: {counts}")
    if outputs == "features":
        return body
    fpn_problems = _problems(fpn, _fpn_shapes())
    if fpn_problems:
        raise IntegrityError(
            f"{path} holds no usable FPN weights: the tensors under backbone.fpn differ from torchvision's "
            "FeaturePyramidNetwork (256 channels over layer1..layer4, extra max-pool level): "
            + "; ".join(fpn_problems),
            hint="give a torchvision detector built with resnet_fpn_backbone('resnet50', ...) defaults",
        )
    return {**{f"body.{k}": v for k, v in body.items() if not k.endswith("num_batches_tracked")},
            **{f"fpn.{k}": v for k, v in fpn.items()}}


def _named_outputs(inner, names: tuple[str, ...]):
    """A module giving ``inner``'s dict of outputs as a tuple in ``names`` order (ONNX outputs are positional)."""
    import torch

    class NamedOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.names = names

        def forward(self, images):
            found = self.inner(images)
            return tuple(found[name] for name in self.names)

    return NamedOutputs()


def build_backbone(state: dict, outputs: str, source: str = "weights"):
    """A float32 CPU model in eval mode giving the ``outputs`` feature maps as a tuple (``interface.output_names``
    order), carrying ``state`` (from ``backbone_state``); IntegrityError if the keys do not fit."""
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
    from torchvision.ops.misc import FrozenBatchNorm2d

    if outputs == "features":
        inner = IntermediateLayerGetter(torchvision.models.resnet50(weights=None), {n: n for n in FEATURE_NAMES})
        state = _with_counters(state, inner)
    else:
        body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        layers = dict(zip(FEATURE_NAMES, FPN_NAMES, strict=False))
        inner = BackboneWithFPN(body, layers, list(FEATURE_CHANNELS), FPN_CHANNELS, extra_blocks=LastLevelMaxPool())
    try:
        inner.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).splitlines()[:3])[:400]
        raise IntegrityError(f"{source} does not fit the ResNet-50 {outputs} model: {detail}") from None
    return _named_outputs(inner.float().eval(), output_names(outputs)).eval()


def _with_counters(state: dict, module) -> dict:
    """``state`` with the BatchNorm counters a detector's FrozenBatchNorm2d never has (zero, as a fresh model)."""
    import torch

    counters = {k: torch.tensor(0) for k in module.state_dict() if k.endswith("num_batches_tracked") and k not in state}
    return {**state, **counters}
