"""Bytes of a workspace file → text, for `read_file`: only the text encodings people store
files in, decoded in chunks that stop when the tool's time is up.

An allow-list, not a deny-list: among Python's codecs, some are not text encodings at all
(`zlib_codec` inflates 1 MiB into hundreds of MB) and some decode in quadratic time
(`punycode`, and `idna` through it: 1 MiB takes minutes of CPU). Every codec listed here
decodes in linear time in C.

Why chunks rather than a subprocess: the tool runs in a thread, which a time-out cannot kill,
so the decode itself must look at the clock. With linear codecs, a 64 KiB chunk takes well
under a millisecond, so a read whose time ran out stops within one chunk; a subprocess per read
would cost tens of milliseconds and a process's memory for every file.
"""

from __future__ import annotations

import codecs
import time

from tools.base import ToolError

CHUNK_BYTES = 64 * 1024
# Canonical names (`codecs.lookup(name).name`), so every alias of one is accepted too.
TEXT_ENCODINGS = frozenset(
    {
        "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be",
        "ascii", "iso8859-1", "iso8859-2", "iso8859-3", "iso8859-4", "iso8859-5", "iso8859-6",
        "iso8859-7", "iso8859-8", "iso8859-9", "iso8859-10", "iso8859-11", "iso8859-13",
        "iso8859-14", "iso8859-15", "iso8859-16", "cp1250", "cp1251", "cp1252", "cp1253", "cp1254",
        "cp1255", "cp1256", "cp1257", "cp1258", "cp437", "cp850", "cp866", "koi8-r", "koi8-u",
        "mac-roman", "shift_jis", "cp932", "euc_jp", "iso2022_jp", "gb2312", "gbk", "gb18030",
        "big5", "big5hkscs", "euc_kr", "cp949",
    }
)  # fmt: skip


def text_codec(encoding: str) -> codecs.CodecInfo:
    """The codec of `encoding` if it is one of TEXT_ENCODINGS; a ToolError that says so if not."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError as exc:
        raise ToolError(f"Unknown encoding {encoding!r}.") from exc
    if codec.name not in TEXT_ENCODINGS:
        raise ToolError(
            f"{codec.name!r} is not a text encoding read_file reads; give one such as 'utf-8', 'latin-1', "
            "'cp1252', 'utf-16-le' or 'shift_jis'."
        )
    return codec


def text_decode(data: bytes, codec: codecs.CodecInfo, *, truncated: bool, deadline: float) -> str:
    """Decode chunk by chunk, stopping with a ToolError once `deadline` (time.monotonic) passed."""
    decoder = codec.incrementaldecoder()
    parts: list[str] = []
    view = memoryview(data)
    start = 0
    try:
        for start in range(0, len(data), CHUNK_BYTES):
            if time.monotonic() > deadline:
                raise ToolError("Decoding the file took too long; read fewer lines or a smaller file.")
            parts.append(decoder.decode(view[start : start + CHUNK_BYTES], final=False))
        # A cut may fall inside a multi-byte character: only a complete file must end cleanly.
        parts.append(decoder.decode(b"", final=not truncated))
    except UnicodeDecodeError as exc:
        # The decoder reports offsets within what it was handed: this chunk, after any bytes it
        # held back from the one before.
        raise ToolError(
            f"The file is not valid {codec.name} (byte {exc.object[exc.start]:#04x} near offset "
            f"{start + exc.start}); try another encoding such as 'latin-1'."
        ) from exc
    except UnicodeError as exc:  # utf-16/utf-32 with no byte-order mark at its start
        raise ToolError(
            f"The file is not valid {codec.name}: it does not start with a byte-order mark; name the byte order, "
            f"e.g. '{codec.name}-le' or '{codec.name}-be'."
        ) from exc
    return "".join(parts)
