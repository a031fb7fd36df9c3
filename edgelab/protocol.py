"""The wire format between the lab and a native or container workload instance.

Binary-safe, length-prefixed frames (see ``modules/README.md``):

- request:  u32 little-endian length N, then N bytes;
- response: u32 little-endian length N, u8 status, then N bytes of body.

Status 0 is a success, 1 a request the workload rejects (body: one line of UTF-8 saying why),
2 an internal error of the workload. A Wasm instance gets the same request bytes and gives the
same status and body through its exports instead of a stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

STATUS_OK = 0
STATUS_REJECTED = 1
STATUS_INTERNAL = 2

_LEN = struct.Struct("<I")
RESPONSE_HEADER_BYTES = _LEN.size + 1
MAX_FRAME_BYTES = 0xFFFF_FFFF


@dataclass(frozen=True)
class Response:
    """One answer of a workload: its status and body bytes, exactly as the workload wrote them."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def reason(self) -> str:
        """The body as one line of text, for a rejection or an internal error."""
        text = self.body.decode("utf-8", "replace").strip()
        return text.splitlines()[0] if text else f"status {self.status}"


def encode_request(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"request of {len(payload)} bytes does not fit a frame")
    return _LEN.pack(len(payload)) + payload


def decode_response_header(header: bytes) -> tuple[int, int]:
    """Return (body length, status) from the 5-byte response header."""
    if len(header) != RESPONSE_HEADER_BYTES:
        raise ValueError(f"short response header: {len(header)} bytes")
    (length,) = _LEN.unpack_from(header)
    return length, header[4]
