"""Serving built engines in this process: the session (``session``: per-worker runners, classify, predict), the
preprocessing policy that turns a decoded image into a routed input (``preprocess_policy``), classifying files
(``predict``) and writing their results (``results``)."""
