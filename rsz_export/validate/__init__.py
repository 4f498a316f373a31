"""Validation: the cases to check (``cases``), the PyTorch reference (``reference``), the one comparison of
logits (``parity``, pure), the tolerance policy (``policy``), the run itself (``run``) and its reports (``report``)."""
