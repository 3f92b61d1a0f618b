"""Small generated bad inputs (no data committed): a PNG decompression bomb, zip members marked
encrypted or compressed with a method zipfile cannot read.

Usage: ``blob = bomb_png(20000, 20000)``; ``patched = patch_zip_member(zip_bytes, name,
encrypted=True)``
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                    zlib.crc32(kind
                                                                               + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes claiming ``width x height`` 8-bit grey pixels (one all-zero row is
    compressed; Pillow checks the size against its limit from the header alone, before decoding)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND",
                                                                                         b"")


def patch_zip_member(blob: bytes, name: str, *, encrypted: bool = False,
                     method: int | None = None) -> bytes:
    """``blob`` with member ``name``'s general-purpose flag bit 0 (encrypted) set and/or its
    compression method replaced, in both its local header and its central-directory entry."""
    raw = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        info = z.getinfo(name)
    local = info.header_offset
    assert raw[local:local + 4] == b"PK\x03\x04"
    central = raw.find(b"PK\x01\x02")
    encoded = name.encode()
    while central != -1:
        n = struct.unpack_from("<H", raw, central + 28)[0]
        if bytes(raw[central + 46:central + 46 + n]) == encoded:
            break
        central = raw.find(b"PK\x01\x02", central + 4)
    assert central != -1, name
    for flags_at, method_at in ((local + 6, local + 8), (central + 8, central + 10)):
        if encrypted:
            struct.pack_into("<H", raw, flags_at, struct.unpack_from("<H", raw, flags_at)[0] | 0x1)
        if method is not None:
            struct.pack_into("<H", raw, method_at, method)
    return bytes(raw)
