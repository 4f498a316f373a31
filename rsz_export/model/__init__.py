"""The model: ResNet-50 weights (``weights``, ``random_init``, ``checkpoint``), class names (``labels``), export to
ONNX and its checks (``export``, ``onnx_interface``), reduced-precision and quantized ONNX (``reduced_precision``,
``quantization``) and int8 calibration (``calibration``, ``calibration_set``)."""
