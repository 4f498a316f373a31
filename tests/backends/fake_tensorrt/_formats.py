"""The double's serialized formats: plan files (engines) and timing caches.

Both start with a magic tag and a JSON header that records what the real formats encode and check: the
TensorRT version that wrote them and the GPU they were made on (NvInferRuntime.h: a plan is specific to the
TensorRT version and device unless built version-/hardware-compatible; NvInfer.h IBuilderConfig::setTimingCache:
"The timing cache has verification header to make sure the provided cache can be used in current
environment"). A sha256 trailer makes truncated or edited files unloadable, like a real plan's checksums.
"""

from __future__ import annotations

import hashlib
import json
import struct

PLAN_MAGIC = b"FAKETRT-PLAN\x00\x01"
CACHE_MAGIC = b"FAKETRT-TCACHE\x00\x01"


class FormatError(ValueError):
    pass


def pack(magic: bytes, header: dict, payload: bytes = b"") -> bytes:
    head = json.dumps(header, sort_keys=True).encode()
    body = magic + struct.pack("<Q", len(head)) + head + payload
    return body + hashlib.sha256(body).digest()


def unpack(magic: bytes, data: bytes) -> tuple[dict, bytes]:
    """(header, payload), or FormatError saying what is wrong."""
    if not data.startswith(magic):
        raise FormatError("magic tag mismatch: not a serialized object of this kind")
    if len(data) < len(magic) + 8 + 32:
        raise FormatError("truncated")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise FormatError("checksum mismatch: the data is truncated or corrupt")
    (size,) = struct.unpack_from("<Q", body, len(magic))
    start = len(magic) + 8
    try:
        header = json.loads(body[start : start + size])
    except ValueError as exc:
        raise FormatError(f"unreadable header: {exc}") from None
    return header, body[start + size :]
