"""Validation: the cases to check (``cases``), the PyTorch reference (``reference``), the tolerance presets and
verdict (``tolerance``), the run itself (``run``) and its reports (``report``). The comparison of logits itself is
``rsz_export.parity``, shared with the model's own checks."""
