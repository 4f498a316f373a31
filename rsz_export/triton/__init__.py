"""Triton deployment: model configs for a manifest (``config``), the model repository written from a build
(``repository``) with its KServe manifest (``kserve``), what ``serve`` is asked for (``spec``) and the local Triton
server core that serves a build through a session (``server``)."""
