"""A fake CUDA device: opaque 256-byte-aligned addresses backed by host memory, and streams whose work runs
when the stream is synchronized.

Why addresses are opaque ints: TensorRT's bindings take device pointers and stream handles as plain integers
(``size_t`` reinterpret_cast to ``void*`` / ``cudaStream_t``, python/src/infer/pyCore.cpp ``set_tensor_address``,
``execute_async_v3``). Host code cannot dereference a real device pointer either, so code under test must move
data with copy calls, exactly as with CUDA. The double resolves an address by looking it up among the
allocations made here; an address that is not inside one (a host pointer, a freed buffer, a buffer too small for
the tensor) is what would be an illegal memory access on a GPU, and the double reports it instead of crashing.

Streams model CUDA's asynchrony: ``execute_async_v3`` and ``*_async`` copies are queued on their stream and run at
``synchronize``; reading an output before synchronizing gives stale bytes, as on a GPU (NvInferRuntime.h
``enqueueV3``: "output tensors require stream synchronization"). Streams are non-blocking (torch's pool streams
are created with cudaStreamNonBlocking), so one stream's sync does not run another's queue. Handle 0 is the
legacy default stream: work on it runs at once.
"""

from __future__ import annotations

import bisect
import itertools

import numpy as np

ALIGNMENT = 256  # NvInferRuntime.h IExecutionContext::setTensorAddress: "at least 256-byte alignment"
_BASE = 0x7F00_0000_0000


class DeviceError(RuntimeError):
    """A CUDA-level failure (bad handle, out of memory, access outside an allocation)."""


class FakeDevice:
    def __init__(self, total_bytes: int):
        self.total_bytes = int(total_bytes)
        self._starts: list[int] = []
        self._blocks: dict[int, bytearray] = {}
        self._next = _BASE
        self._queues: dict[int, list] = {}
        self._stream_ids = itertools.count(0x5000, 0x10)

    # -- memory -------------------------------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        return sum(len(b) for b in self._blocks.values())

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.used_bytes

    def malloc(self, nbytes: int) -> int:
        """cudaMalloc: a 256-byte aligned address, or DeviceError when the device is full."""
        nbytes = max(int(nbytes), 1)
        if nbytes > self.free_bytes:
            raise DeviceError(f"out of memory: {nbytes} bytes requested, {self.free_bytes} free")
        ptr = self._next
        self._next += (nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT + ALIGNMENT  # a guard gap between blocks
        self._blocks[ptr] = bytearray(nbytes)
        bisect.insort(self._starts, ptr)
        return ptr

    def free(self, ptr: int) -> None:
        if ptr not in self._blocks:
            raise DeviceError(f"free of {ptr:#x}, which is not an allocation start")
        del self._blocks[ptr]
        self._starts.remove(ptr)

    def view(self, ptr: int, nbytes: int) -> memoryview:
        """The device bytes [ptr, ptr + nbytes); DeviceError when they are not inside one live allocation."""
        if nbytes < 0:  # a tensor shape with an unresolved (-1) dimension
            raise DeviceError(f"a negative byte count ({nbytes}) at {ptr:#x}: the tensor's shape is not concrete")
        i = bisect.bisect_right(self._starts, ptr) - 1
        if i < 0:
            raise DeviceError(f"illegal address {ptr:#x}: not device memory allocated on this device")
        start = self._starts[i]
        block = self._blocks[start]
        if ptr + nbytes > start + len(block):
            raise DeviceError(
                f"illegal address: {nbytes} bytes at {ptr:#x} run past the end of a {len(block)}-byte allocation"
            )
        return memoryview(block)[ptr - start : ptr - start + nbytes]

    # -- streams ------------------------------------------------------------------------------------------
    def create_stream(self) -> int:
        handle = next(self._stream_ids)
        self._queues[handle] = []
        return handle

    def destroy_stream(self, handle: int) -> None:
        self.synchronize(handle)
        self._queues.pop(handle, None)

    def check_stream(self, handle: int) -> None:
        if int(handle) != 0 and int(handle) not in self._queues:
            raise DeviceError(f"invalid resource handle: stream {int(handle):#x} was not created on this device")

    def enqueue(self, handle: int, work) -> None:
        self.check_stream(handle)
        if int(handle) == 0:
            work()
        else:
            self._queues[int(handle)].append(work)

    def synchronize(self, handle: int | None = None) -> None:
        """cudaStreamSynchronize (one stream) or cudaDeviceSynchronize (None): run the queued work in order."""
        handles = list(self._queues) if handle is None else [int(handle)]
        for h in handles:
            if h == 0:
                continue
            self.check_stream(h)
            queue = self._queues[h]
            while queue:
                queue.pop(0)()

    def pending(self, handle: int) -> int:
        return len(self._queues.get(int(handle), ()))

    # -- copies ---------------------------------------------------------------------------------------------
    def memcpy_htod(self, ptr: int, array, stream: int = 0) -> None:
        """Copy a host array to ``ptr`` (async on ``stream``; the host bytes are taken now)."""
        data = np.ascontiguousarray(array).tobytes()
        target = self.view(ptr, len(data))

        def work():
            target[:] = data

        self.enqueue(stream, work)

    def memcpy_dtoh(self, ptr: int, shape, dtype, stream: int = 0) -> np.ndarray:
        """A host array that receives the device bytes at ``ptr`` when ``stream``'s work up to here has run."""
        out = np.zeros(shape, dtype=dtype)
        source = self.view(ptr, out.nbytes)

        def work():
            out.reshape(-1).view(np.uint8)[:] = np.frombuffer(source, dtype=np.uint8)

        self.enqueue(stream, work)
        return out

    def read(self, ptr: int, shape, dtype) -> np.ndarray:
        """What the device memory holds now (no synchronization): for tests of the double."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return np.frombuffer(bytes(self.view(ptr, nbytes)), dtype=dtype).reshape(shape)
