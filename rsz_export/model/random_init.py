"""Seeded, platform-independent random ResNet-50 weights with trained-looking statistics.

Why: tests and offline machines need a model whose numerics resemble a trained one (activations of unit
scale at every BatchNorm, logits spread over classes, different images giving different top-1), or parity
checks prove nothing. How: draw conv/fc weights from numpy's PCG64 (identical on every machine), then run
one float64 forward pass over smooth seeded images and set each BatchNorm's running statistics to the
statistics of its actual input (data-dependent initialisation), and centre and scale the classifier.
Float64 throughout makes the float32 result bit-identical across CPUs, so its sha256 is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from rsz_export.interface import NUM_CLASSES


def _draw_parameters(model, rng: np.random.Generator, last_bn_gamma: float) -> None:
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            values = rng.standard_normal(tuple(module.weight.shape)) * math.sqrt(2.0 / fan_out)
            module.weight.data = torch.from_numpy(values)
        elif isinstance(module, torch.nn.BatchNorm2d):
            gamma = last_bn_gamma if name.endswith("bn3") else 1.0
            module.weight.data = torch.full((module.num_features,), gamma, dtype=torch.float64)
            module.bias.data = torch.from_numpy(rng.normal(0.0, 0.05, module.num_features))
        elif isinstance(module, torch.nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            module.weight.data = torch.from_numpy(rng.uniform(-bound, bound, tuple(module.weight.shape)))
            module.bias.data = torch.zeros(module.out_features, dtype=torch.float64)


def _calibration_images(rng: np.random.Generator, size: int, count: int = 8):
    """Smooth, image-like inputs: coarse colour blobs plus fine texture, roughly ImageNet-normalised."""
    import torch
    import torch.nn.functional as F

    coarse = torch.from_numpy(rng.standard_normal((count, 3, 6, 6)))
    fine = torch.from_numpy(rng.standard_normal((count, 3, size, size))) * 0.3
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) + fine
    return (images - images.mean(dim=(2, 3), keepdim=True)) / images.std(dim=(2, 3), keepdim=True)


def _calibrate_batchnorm(model, images):
    """One forward pass that sets each BatchNorm's statistics from its input; returns the pooled features."""
    import torch

    def set_statistics(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False) + 1e-3)

    pooled = []
    hooks = [
        m.register_forward_pre_hook(set_statistics) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    hooks.append(model.avgpool.register_forward_hook(lambda module, inputs, output: pooled.append(output)))
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.flatten(pooled[0], 1)


def _centre_classifier(model, features, logit_std: float) -> None:
    """Scale the classifier so logits spread like a trained one's, and centre it on the mean feature."""
    import torch

    with torch.no_grad():
        centred = features - features.mean(dim=0, keepdim=True)
        spread = (centred @ model.fc.weight.T).std()
        model.fc.weight.mul_(logit_std / float(spread))
        model.fc.bias.copy_(-(features.mean(dim=0) @ model.fc.weight.T))


def calibrated_state_dict(
    seed: int, size: int, last_bn_gamma: float, logit_std: float, num_classes: int = NUM_CLASSES
) -> dict:
    """Generate the weights (float32 state_dict) for ``seed`` with a ``num_classes`` head; see the module
    docstring. The default head gives the same bytes as before heads of other sizes existed."""
    import torchvision

    rng = np.random.Generator(np.random.PCG64(seed))
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes).double().eval()
    _draw_parameters(model, rng, last_bn_gamma)
    images = _calibration_images(rng, size)
    features = _calibrate_batchnorm(model, images)
    _centre_classifier(model, features, logit_std)
    return {k: (v.float() if v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
