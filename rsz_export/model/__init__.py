"""The model: ResNet-50 weights (``weights``, ``random_init``), ImageNet facts (``imagenet``), export to ONNX
and its checks (``export``, ``onnx_interface``), and reduced-precision ONNX (``reduced_precision``)."""
