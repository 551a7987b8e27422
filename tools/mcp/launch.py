"""Run an MCP server so that it dies with the backend worker that started it, and so that no
message of it larger than a cap ever reaches the worker.

Started as `python -I -S launch.py <parent pid> <max bytes> <command> <args...>`: it asks the
kernel to kill it when its parent dies (Linux `PR_SET_PDEATHSIG`), starts the server as its own
child under the same request, and relays the server's stdout line by line (one line is one
JSON-RPC message). A worker killed with SIGKILL cannot close its servers; without this they would
outlive it. A line longer than the cap is read and dropped here, never held whole: the worker
gets instead a JSON-RPC error for the request it answered, so the call fails at once with a
reason, its event loop never parses a huge message, and the server stays usable. The server's
stdin and stderr are the launcher's own, passed through untouched. Stand-alone on purpose: it
runs in the server's stripped environment, without Django.
"""

import ctypes
import json
import os
import re
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
CHUNK_BYTES = 65536
EDGE_BYTES = 4096  # of each end of a dropped line, kept to find the id of the request it answered
# A response's id as its object's last key (`{"result": ..., "jsonrpc": "2.0", "id": 7}`, as the
# TypeScript SDK writes it): a key and a closing brace at the line's end, so not inside a string.
_ID_AT_END = re.compile(r'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*$')
TOO_LARGE = -32050  # the JSON-RPC error code of a dropped message (tools.mcp.server reads it)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def request_id(head: bytes, tail: bytes = b"") -> int | str | None:
    """The top-level `"id"` of a JSON object from its first and last bytes, or None when they do
    not say."""
    at_end = _ID_AT_END.search(tail.decode("utf-8", "replace"))
    if at_end:
        return json.loads(at_end.group(1))
    return _id_in_head(head)


def _id_in_head(head: bytes) -> int | str | None:
    text = head.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    depth, index = 0, 0
    while index < len(text):
        char = text[index]
        if char == '"':
            try:
                key, end = decoder.raw_decode(text, index)
            except ValueError:
                return None  # the head ends inside this string
            rest = text[end:].lstrip()
            if depth == 1 and key == "id" and rest.startswith(":"):
                try:
                    value, _ = decoder.raw_decode(rest[1:].lstrip())
                except ValueError:
                    return None
                return value if isinstance(value, int | str) and not isinstance(value, bool) else None
            index = end
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        index += 1
    return None


def refusal(head: bytes, tail: bytes, size: int, limit: int) -> bytes:
    """What the worker gets for a dropped line: an error for its request, or nothing without an id."""
    identifier = request_id(head, tail)
    if identifier is None:
        print(f"dropped a message of {size} bytes with no request id (the limit is {limit})", file=sys.stderr)
        return b""
    message = f"the result has more than {limit} bytes ({size} bytes), the limit MCP_MAX_RESULT_BYTES"
    error = {"jsonrpc": "2.0", "id": identifier, "error": {"code": TOO_LARGE, "message": message}}
    return json.dumps(error).encode() + b"\n"


def relay(source: int, target: int, limit: int) -> None:
    """Copy lines from `source` to `target` until the end; a line over `limit` bytes (its newline
    not counted) is replaced by `refusal`, holding at most `limit` bytes at any time."""
    line = bytearray()
    dropped = -1  # bytes of the line being dropped, or -1
    head = tail = b""
    while chunk := os.read(source, CHUNK_BYTES):
        start = 0
        while start < len(chunk):
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            piece = memoryview(chunk)[start:end]
            if dropped < 0 and len(line) + len(piece) > limit:
                head, dropped = bytes(line[:EDGE_BYTES]) + bytes(piece[:EDGE_BYTES]), len(line)
                tail = bytes(line[-EDGE_BYTES:])
                line.clear()
            if dropped >= 0:
                dropped += len(piece)
                tail = (tail + bytes(piece[-EDGE_BYTES:]))[-EDGE_BYTES:]
            else:
                line += piece
            if newline < 0:
                break
            if dropped >= 0:
                out, dropped = refusal(head[:EDGE_BYTES], tail, dropped, limit), -1
            else:
                out = bytes(line) + b"\n"
                line.clear()
            if out:
                _write_all(target, out)
            start = newline + 1
    if line and dropped < 0:
        _write_all(target, bytes(line))


def _write_all(target: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(target, view) :]


def main() -> None:
    parent, limit, command, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[3:]
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(1)
    try:
        # The server dies with this launcher, as this launcher dies with the worker.
        # An argument list, as the entry gave it; preexec_fn is safe here (no threads).
        server = subprocess.Popen(args, stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
    except OSError as exc:
        print(f"cannot run {command!r}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)
    try:
        relay(server.stdout.fileno(), sys.stdout.fileno(), limit)
    except BrokenPipeError:
        pass  # the worker closed its end: the server is being stopped
    sys.exit(server.wait())


if __name__ == "__main__":
    main()
