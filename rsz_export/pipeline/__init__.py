"""The build pipeline: ``run.build`` takes inputs (``inputs``, ``onnx_import``) through the export, calibration
and engine stages (``stages``, ``calibration_stage``), each reused when its key (``keys``) is unchanged, and keeps
the folder tidy (``cleanup``)."""
