"""IExecutionContext: profile selection, input shapes, tensor addresses and execute_async_v3, reading inputs from
and writing outputs to the fake device memory."""

from __future__ import annotations

import weakref

import numpy as np

from ._core import as_dims, log, raise_no_constructor
from ._device import ALIGNMENT, DeviceError

NUMPY = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT32": np.int32,
    "INT64": np.int64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}
ITEMSIZE = {"FLOAT": 4, "HALF": 2, "BF16": 2, "INT32": 4, "INT64": 8, "INT8": 1, "UINT8": 1, "BOOL": 1, "FP8": 1}


class IExecutionContext:
    __init__ = raise_no_constructor

    def _allocate(self, nbytes: int) -> bool:
        world = self._world
        if self._memory is not None:
            world.device.free(self._memory)
            self._memory = None
        try:
            self._memory = world.device.malloc(nbytes)
        except DeviceError as exc:
            log(
                world,
                self._engine._logger,
                "ERROR",
                f"Requested amount of GPU memory ({nbytes} bytes) could not be "
                f"allocated. There may not be enough free memory for allocation to succeed. ({exc})",
            )
            return False
        return True

    def __del__(self):
        try:
            if self._memory is not None:
                self._world.device.free(self._memory)
            for profile, holder in list(self._engine._claims.items()):
                if holder() is self or holder() is None:
                    del self._engine._claims[profile]
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    engine = property(lambda self: self._engine)
    active_optimization_profile = property(lambda self: self._profile)

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        """NvInferRuntime.h setOptimizationProfileAsync: index in 0..getNbOptimizationProfiles()-1; must precede
        setInputShape for the new profile, so switching clears the input shapes. The binding raises
        RuntimeError("Error in set optimization profile async.") instead of returning false (pyCore.cpp
        context_set_optimization_profile_async). Profile exclusivity: see Knobs.profile_sharing."""
        world, engine = self._world, self._engine

        def refuse(reason: str):
            log(world, engine._logger, "ERROR", f"IExecutionContext::setOptimizationProfileAsync: {reason}")
            raise RuntimeError("Error in set optimization profile async.")

        try:
            world.device.check_stream(stream_handle)
        except DeviceError as exc:
            refuse(str(exc))
        if not 0 <= profile_index < engine.num_optimization_profiles:
            refuse(f"profile index {profile_index} is outside 0..{engine.num_optimization_profiles - 1}")
        holder = engine._claims.get(profile_index)
        if holder is not None and holder() not in (None, self) and not world.knobs.profile_sharing:
            refuse(
                f"Profile {profile_index} has been chosen by another IExecutionContext. Use another profileIndex "
                "or destroy the IExecutionContext that use this profile."
            )
        if self._strategy == "ON_PROFILE_CHANGE" and profile_index != self._profile:
            if not self._allocate(engine._header["device_memory"][profile_index]):
                refuse("could not allocate the new profile's device memory")
        for profile, claimed in list(engine._claims.items()):
            if claimed() is self:
                del engine._claims[profile]
        engine._claims[profile_index] = weakref.ref(self)
        if profile_index != self._profile:
            self._shapes.clear()
        self._profile = profile_index
        # The switch is queued on ``stream_handle`` (TENSORRT.md section 7; NvInferRuntime.h
        # setOptimizationProfileAsync: "the profile switch is asynchronous ... ensure that the profile switch has
        # finished, e.g. by synchronizing the stream, before enqueuing on another stream"): work on another
        # stream before that stream is synchronized fails (see _enqueue_problem).
        self._switch_stream = int(stream_handle)
        ref = weakref.ref(self)
        world.device.enqueue(stream_handle, lambda: setattr(ref(), "_switch_stream", None) if ref() else None)
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        """NvInferRuntime.h setInputShape: false for a name that is no input, a rank or static dim mismatch, or a
        shape outside the active profile's [min, max] (the reason goes to the logger)."""
        world, engine = self._world, self._engine
        dims = list(as_dims(world, shape, "set_input_shape"))
        io = engine._find(name)
        problem = None
        if io is None or io[1] != "INPUT":
            problem = f"{name!r} is not an input tensor"
        else:
            net = io[3]
            lo, _, hi = engine._header["profiles"][self._profile].get(name, [net, net, net])
            if len(dims) != len(net) or any(n != -1 and d != n for d, n in zip(dims, net)):
                problem = f"shape {dims} does not match the network's {net}"
            elif any(not a <= d <= b for a, d, b in zip(lo, dims, hi)):
                problem = f"shape {dims} is outside profile {self._profile}'s range {lo}..{hi}"
        if problem:
            log(
                world,
                engine._logger,
                "ERROR",
                f"IExecutionContext::setInputShape: Error Code 3: API Usage Error ({problem})",
            )
            return False
        self._shapes[name] = dims
        return True

    def get_tensor_shape(self, name: str):
        world, engine = self._world, self._engine
        Dims = world.classes["Dims"]
        io = engine._find(name)
        if io is None:
            return Dims._invalid()
        if io[1] == "INPUT":
            return Dims(self._shapes.get(name, io[3]))
        if not self._all_inputs_set():
            return Dims(io[3])
        return Dims(engine._output_shapes(self._shapes)[name])

    def _all_inputs_set(self) -> bool:
        return all(n in self._shapes for n, _, _ in self._engine._header["inputs"])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        """NvInferRuntime.h setTensorAddress: false if the name is no IO tensor; "The pointer must have at least
        256-byte alignment"."""
        world, engine = self._world, self._engine
        if not isinstance(memory, int) or memory < 0:
            raise TypeError("set_tensor_address(): incompatible function arguments: memory must be an int >= 0")
        if engine._find(name) is None:
            log(world, engine._logger, "ERROR", f"IExecutionContext::setTensorAddress: {name!r} is not an IO tensor")
            return False
        if memory % ALIGNMENT:
            log(
                world,
                engine._logger,
                "ERROR",
                f"IExecutionContext::setTensorAddress: {memory:#x} is not {ALIGNMENT}-byte aligned",
            )
            return False
        self._addresses[name] = memory
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        """NvInferRuntime.h enqueueV3: every input needs its shape set (setInputShape) and a non-null address, every
        output a non-null address; the work runs on ``stream_handle`` and its outputs are valid only after that
        stream is synchronized. False (with the reason logged) otherwise."""
        world, engine = self._world, self._engine
        problem = self._enqueue_problem(stream_handle)
        if problem:
            log(world, engine._logger, "ERROR", f"IExecutionContext::enqueueV3: {problem}")
            return False
        if int(stream_handle) == 0:  # enqueueV3 \warning about the default stream
            log(
                world,
                engine._logger,
                "WARNING",
                "Using default stream in enqueueV3() may lead to performance issues "
                "due to additional calls to cudaStreamSynchronize() by TensorRT to ensure correct synchronization.",
            )
        inputs = {n: (self._addresses[n], t, self._shapes[n]) for n, t, _ in engine._header["inputs"]}
        out_shapes = engine._output_shapes(self._shapes)
        outputs = {n: (self._addresses[n], t, out_shapes[n]) for n, t, _ in engine._header["outputs"]}
        try:
            views = {n: world.device.view(p, _nbytes(t, s)) for n, (p, t, s) in {**inputs, **outputs}.items()}
        except DeviceError as exc:  # a GPU would fault (illegal memory access); the double reports it
            log(world, engine._logger, "ERROR", f"IExecutionContext::enqueueV3: {exc}")
            return False

        def work():
            feeds = {n: np.frombuffer(views[n], dtype=NUMPY[t]).reshape(s).copy() for n, (_, t, s) in inputs.items()}
            results = engine._run(feeds)
            for n, (_, t, _s) in outputs.items():
                views[n][:] = np.ascontiguousarray(results[n], dtype=NUMPY[t]).tobytes()

        world.device.enqueue(stream_handle, work)
        return True

    def _enqueue_problem(self, stream_handle) -> str | None:
        world, engine = self._world, self._engine
        try:
            world.device.check_stream(stream_handle)
        except DeviceError as exc:
            return str(exc)
        switch = getattr(self, "_switch_stream", None)
        if switch is not None and switch != int(stream_handle):
            return (f"the switch to profile {self._profile} queued on stream {switch:#x} has not finished: "
                    f"synchronize that stream before enqueuing on stream {int(stream_handle):#x}")
        holder = engine._claims.get(self._profile)
        if holder is not None and holder() not in (None, self) and not world.knobs.profile_sharing:
            return f"profile {self._profile} is in use by another execution context of this engine"
        missing = [n for n, _, _ in engine._header["inputs"] if n not in self._shapes]
        if missing:
            return f"input shapes not specified for {missing} (call set_input_shape first)"
        unset = [n for n, _, _ in engine._header["inputs"] + engine._header["outputs"] if not self._addresses.get(n)]
        if unset:
            return f"no address set for {unset} (every input and output needs set_tensor_address)"
        for name, (io_type) in [(n, t) for n, t, _ in engine._header["inputs"] + engine._header["outputs"]]:
            if io_type not in NUMPY:
                return f"the double cannot run {io_type} IO tensors ({name})"
        return None


def _nbytes(dtype: str, shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) * ITEMSIZE[dtype]
