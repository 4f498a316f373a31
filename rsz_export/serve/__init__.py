"""Serving built engines: routing each image to an engine and profile (``routing``, pure), the serving session
(``session``), classifying files (``predict``), and accuracy per resolution (``accuracy``)."""
