"""Cancelling a TensorRT build with Ctrl-C (or SIGTERM).

While TensorRT builds, the interpreter runs Python only inside TensorRT's callbacks (the logger, a progress
monitor), and the binding prints and drops any exception raised there, KeyboardInterrupt included
(python/src/infer/pyCore.cpp ``PyLogger::log`` catches ``std::exception``, which pybind11's
``error_already_set`` is). So a plain Ctrl-C is lost and the build goes on. The supported way to stop a build
is an ``IProgressMonitor`` whose ``step_complete`` returns False (NvInferRuntime.h
``IProgressMonitor::stepComplete``); ``build_serialized_network`` then returns None. Here the signals only
ask the monitor to cancel; once the build has returned, the signal is raised again under the handlers that
were there before, which then act as they always do (KeyboardInterrupt; the CLI's exit 130).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def cancel_monitor(trt):
    """An IProgressMonitor that lets the build go on until ``signal`` is set, then cancels it at the next step."""

    class _CancelMonitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.signal: int | None = None

        def phase_start(self, phase_name, parent_phase, num_steps):
            return None

        def step_complete(self, phase_name, step):
            return self.signal is None

        def phase_finish(self, phase_name):
            return None

    return _CancelMonitor()


@contextlib.contextmanager
def signals_cancel(monitor) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM set ``monitor.signal`` instead of raising inside a callback; after it,
    the first such signal is raised again under the previous handlers (and KeyboardInterrupt if they return).
    Only the main thread may set handlers: elsewhere nothing changes. Ignored signals stay ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in CANCEL_SIGNALS}
    for signum, handler in previous.items():
        if handler not in (signal.SIG_IGN, None):  # None: set outside Python, left alone
            signal.signal(signum, lambda got, _frame: setattr(monitor, "signal", monitor.signal or got))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler not in (signal.SIG_IGN, None):
                signal.signal(signum, handler)
    if monitor.signal is not None:
        signal.raise_signal(monitor.signal)
        raise KeyboardInterrupt  # the build was cancelled: it cannot go on, whatever the previous handler did
