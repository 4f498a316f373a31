"""Images in, model inputs out: safe file reading (``loading``), size scans for planning (``sizes``), ImageNet's
normalisation, crop ratio and class names (``imagenet``), and resizing and normalisation (``preprocess``)."""
