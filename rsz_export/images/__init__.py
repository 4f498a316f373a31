"""Images in, model inputs out: safe file reading (``files``), size scans for planning (``sizes``), and
resizing and normalisation (``preprocess``)."""
