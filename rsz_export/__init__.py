"""rsz-export: ResNet-50 at any input resolution, exported, built, validated and benchmarked over a range."""

__version__ = "0.1.0"
