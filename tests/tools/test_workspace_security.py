"""The attack suite: every way out of the workspace is refused, with no content or host path
in the answer, and nothing hangs or reads without bound."""

from __future__ import annotations

import codecs
import json
import os
import socket
import time
import unicodedata
from pathlib import Path

import pytest
from django.test import override_settings

from tools.adapter import tool_invoke
from tools.base import ToolError
from tools.registry import registry
from tools.text import text_codec, text_decode

SECRET = "TOP-SECRET-CONTENT"


@pytest.fixture
def layout(tmp_path: Path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "inside.txt").write_text("inside content")
    (root / "sub").mkdir()
    (root / "sub" / "deep.txt").write_text("deep content")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    evil = tmp_path / "ws-evil"  # a sibling whose name extends the root's
    evil.mkdir()
    (evil / "secret.txt").write_text(SECRET)
    with override_settings(TOOLS_ALLOWED_DIRS=[str(root)]):
        yield root, tmp_path


async def read(path: str, **kwargs):
    return await tool_invoke(registry.get("read_file"), json.dumps({"path": path, **kwargs}))


async def ls(path: str, **kwargs):
    return await tool_invoke(registry.get("ls"), json.dumps({"path": path, **kwargs}))


def assert_denied(result, tmp_path: Path):
    assert result.ok is False
    assert result.content.startswith("Error: ")
    assert SECRET not in result.content
    assert str(tmp_path) not in result.content


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "a/../../outside/secret.txt",
        "sub/../../outside/secret.txt",
        "./../outside/secret.txt",
        "..",
        "../",
        "sub/../..//outside/secret.txt",
        "~/secret.txt",
        "~",
        "/etc/passwd",
        "//etc/passwd",
        "C:\\Windows\\win.ini",
        "sub\\..\\..\\outside\\secret.txt",
        "\\\\server\\share\\secret.txt",
        "inside.txt\x00.png",
        "/proc/self/environ",
        "/dev/zero",
    ],
)
async def test_escaping_paths_are_refused(layout, path):
    _root, tmp_path = layout
    assert_denied(await read(path), tmp_path)


async def test_absolute_path_outside_and_the_evil_sibling(layout):
    _root, tmp_path = layout
    assert_denied(await read(str(tmp_path / "outside" / "secret.txt")), tmp_path)
    assert_denied(await read(str(tmp_path / "ws-evil" / "secret.txt")), tmp_path)
    assert_denied(await ls(str(tmp_path / "ws-evil")), tmp_path)


async def test_absolute_path_inside_the_root_is_accepted_and_shown_relative(layout):
    root, _tmp_path = layout
    result = await read(str(root / "sub" / "deep.txt"))
    assert result.ok and result.content == "deep content"
    assert result.data["path"] == "sub/deep.txt"


async def test_trailing_slashes_and_double_slashes_inside_are_fine(layout):
    _root, _ = layout
    assert (await ls("sub/")).ok
    assert (await read("sub//deep.txt")).content == "deep content"


async def test_symlink_leaf_pointing_outside(layout):
    root, tmp_path = layout
    (root / "leak.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    assert_denied(await read("leak.txt"), tmp_path)


async def test_symlinked_directory_in_the_middle_pointing_outside(layout):
    root, tmp_path = layout
    (root / "escape").symlink_to(tmp_path / "outside")
    assert_denied(await read("escape/secret.txt"), tmp_path)
    assert_denied(await ls("escape"), tmp_path)


async def test_relative_symlink_climbing_out(layout):
    root, tmp_path = layout
    (root / "sub" / "up").symlink_to("../../outside")
    assert_denied(await read("sub/up/secret.txt"), tmp_path)


async def test_symlink_inside_the_root_is_followed(layout):
    root, _ = layout
    (root / "alias.txt").symlink_to(root / "sub" / "deep.txt")
    (root / "subalias").symlink_to("sub")
    assert (await read("alias.txt")).content == "deep content"
    assert (await read("subalias/deep.txt")).content == "deep content"


async def test_symlink_loop(layout):
    root, tmp_path = layout
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    result = await read("loop1")
    assert_denied(result, tmp_path)
    assert "symbolic links" in result.content


async def test_proc_and_dev_through_a_symlink_inside_the_root(layout):
    root, tmp_path = layout
    (root / "env").symlink_to("/proc/self/environ")
    (root / "zero").symlink_to("/dev/zero")
    assert_denied(await read("env"), tmp_path)
    assert_denied(await read("zero"), tmp_path)


async def test_fifo_socket_and_device_do_not_hang(layout):
    root, tmp_path = layout
    os.mkfifo(root / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    try:
        for name in ("pipe", "sock"):
            result = await read(name)
            assert_denied(result, tmp_path)
            assert "not a regular file" in result.content.lower()
    finally:
        server.close()


async def test_device_file_inside_a_root_is_refused():
    with override_settings(TOOLS_ALLOWED_DIRS=["/dev"]):
        result = await read("null")
        assert not result.ok and "regular file" in result.content
        result = await ls(".")
        assert not result.ok and "system directories" in result.content


async def test_huge_sparse_file_is_not_read_whole(layout):
    root, _ = layout
    with open(root / "sparse.log", "wb") as handle:
        handle.truncate(4 * 1024**3)  # 4 GiB, no blocks allocated
        handle.seek(0)
        handle.write(b"start of a log\n")
    with override_settings(TOOLS_MAX_READ_BYTES=1024):
        result = await read("sparse.log")
    # Sparse zeros are NUL bytes: refused as binary after reading only the first KiB.
    assert not result.ok and "binary" in result.content


async def test_large_text_file_is_truncated_with_a_note(layout):
    root, _ = layout
    (root / "big.txt").write_text("line\n" * 10_000)
    with override_settings(TOOLS_MAX_READ_BYTES=1000):
        result = await read("big.txt")
    assert result.ok and result.data["truncated"] is True
    assert result.content.count("line\n") == 200
    assert "[truncated" in result.content


async def test_a_name_in_another_normal_form_matches_a_unique_entry(layout):
    root, _ = layout
    (root / unicodedata.normalize("NFD", "café.txt")).write_text("coffee")
    result = await read(unicodedata.normalize("NFC", "café.txt"))
    assert result.ok and result.content == "coffee"


async def test_an_ambiguous_normal_form_match_is_refused(layout):
    root, tmp_path = layout
    (root / unicodedata.normalize("NFC", "résumé.txt")).write_text("one")
    (root / unicodedata.normalize("NFD", "résumé.txt")).write_text("two")
    # Each exact spelling reads its own file.
    assert (await read(unicodedata.normalize("NFC", "résumé.txt"))).content == "one"
    assert (await read(unicodedata.normalize("NFD", "résumé.txt"))).content == "two"
    # A mixed spelling (first é decomposed, second composed) equals both after NFC.
    result = await read("re\u0301sumé.txt")
    assert_denied(result, tmp_path)
    assert "ambiguous" in result.content


async def test_compatibility_lookalikes_do_not_match(layout):
    root, tmp_path = layout
    (root / "resume.txt").write_text("plain")
    assert_denied(await read("ｒesume.txt"), tmp_path)  # fullwidth r is another name


async def test_path_swapped_for_a_symlink_between_check_and_open(layout, monkeypatch):
    root, tmp_path = layout
    import tools.workspace as workspace

    original = workspace._open_final

    def swap_then_open(dir_fd, name, *args):
        os.unlink(root / "inside.txt")
        os.symlink(tmp_path / "outside" / "secret.txt", root / "inside.txt")
        return original(dir_fd, name, *args)

    monkeypatch.setattr(workspace, "_open_final", swap_then_open)
    assert_denied(await read("inside.txt"), tmp_path)


async def test_a_hard_link_to_a_file_outside_is_refused_unless_allowed(layout):
    root, tmp_path = layout
    os.link(tmp_path / "outside" / "secret.txt", root / "linked.txt")
    refused = await read("linked.txt")
    assert_denied(refused, tmp_path)
    assert "hard links" in refused.content and "TOOLS_ALLOW_HARDLINKS" in refused.content
    with override_settings(TOOLS_ALLOW_HARDLINKS=True):
        assert (await read("linked.txt")).content == SECRET


@pytest.mark.parametrize("codec", ["zlib_codec", "zlib", "bz2_codec", "base64", "hex", "rot13", "uu_codec"])
async def test_codecs_that_are_not_text_encodings_are_refused_by_name(layout, codec):
    root, _tmp = layout
    # Bytes-to-bytes codecs expand their input (a crafted zlib file: ~320 MB from 1 MiB); the
    # codec is refused before the file is read.
    (root / "plain.txt").write_bytes(b"78da" * 1000)
    result = await read("plain.txt", encoding=codec)
    assert result.ok is False
    assert f"{codecs.lookup(codec).name!r} is not a text encoding" in result.content


async def test_text_encodings_are_still_read(layout):
    root, _tmp = layout
    (root / "latin.txt").write_bytes("café".encode("cp1252"))
    assert (await read("latin.txt", encoding="cp1252")).content == "café"


async def test_a_nul_past_the_sniffed_bytes_is_refused(layout):
    root, _tmp = layout
    (root / "late-nul.txt").write_bytes(b"a" * 10_000 + b"\x00tail")
    result = await read("late-nul.txt")
    assert result.ok is False and "NUL" in result.content


@pytest.mark.parametrize("codec", ["punycode", "idna", "utf-7", "unicode_escape", "raw_unicode_escape"])
async def test_only_listed_text_encodings_are_read(layout, codec):
    """`punycode` decodes in quadratic time (1 MiB: minutes of CPU, on after the time-out);
    only the listed encodings, all linear, are decoded."""
    root, _tmp = layout
    (root / "puny.txt").write_bytes(b"a" * 1000 + b"-" + b"b9" * 1000)
    result = await read("puny.txt", encoding=codec)
    assert result.ok is False
    assert "not a text encoding read_file reads" in result.content or "Unknown encoding" in result.content


def test_a_decode_whose_time_ran_out_stops_instead_of_running_on():
    """The tool's thread cannot be killed from outside: the decode looks at its deadline
    between chunks, so a time-out frees the CPU instead of leaving a thread decoding on."""
    codec = text_codec("utf-16-le")
    data = "é".encode("utf-16-le") * 400_000
    assert text_decode(data, codec, truncated=False, deadline=time.monotonic() + 60) == "é" * 400_000
    with pytest.raises(ToolError, match="took too long"):
        text_decode(data, codec, truncated=False, deadline=time.monotonic() - 1)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
async def test_utf16_without_a_byte_order_mark_is_a_clear_tool_error(layout, encoding):
    root, _tmp = layout
    (root / "nobom.txt").write_bytes(b"hello world\n")
    result = await read("nobom.txt", encoding=encoding)
    assert result.ok is False
    assert "failed unexpectedly" not in result.content
    assert f"'{encoding}-le'" in result.content or "not valid" in result.content
