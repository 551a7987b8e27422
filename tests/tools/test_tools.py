"""`ls` and `read_file` as the model uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import override_settings

from tools.adapter import tool_invoke
from tools.registry import registry


async def run(name: str, **arguments):
    return await tool_invoke(registry.get(name), json.dumps(arguments))


@pytest.fixture
def ws(tmp_path: Path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "b.py").write_text("print('b')\n")
    (root / "a.md").write_text("# A\n")
    (root / ".hidden").write_text("h")
    (root / "src").mkdir()
    with override_settings(TOOLS_ALLOWED_DIRS=[str(root)]):
        yield root


async def test_ls_sorted_with_directories_marked(ws):
    body = json.loads((await run("ls")).content)
    assert body == {"path": ".", "entries": ["a.md", "b.py", "src/"], "count": 3}


async def test_ls_hidden_pattern_and_details(ws):
    assert ".hidden" in json.loads((await run("ls", show_hidden=True)).content)["entries"]
    assert json.loads((await run("ls", pattern="*.py")).content)["entries"] == ["b.py"]
    detailed = json.loads((await run("ls", details=True)).content)["entries"]
    assert detailed[0]["name"] == "a.md" and detailed[0]["type"] == "file" and detailed[0]["size"] == 4
    assert detailed[2]["type"] == "directory" and "T" in detailed[2]["modified"]


async def test_ls_says_when_the_list_was_cut(ws):
    for index in range(30):
        (ws / f"f{index:02}.txt").write_text("")
    with override_settings(TOOLS_MAX_ENTRIES=10):
        body = json.loads((await run("ls")).content)
    assert len(body["entries"]) == 10 and body["count"] == 33 and "first 10 of 33" in body["truncated"]


async def test_ls_of_a_file_or_missing_path(ws):
    assert "Not a directory" in (await run("ls", path="a.md")).content
    assert "Not found" in (await run("ls", path="nope")).content


async def test_read_file_lines_and_offset(ws):
    (ws / "lines.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    result = await run("read_file", path="lines.txt", offset=2, lines=3)
    assert result.content.startswith("line 3\nline 4\nline 5\n")
    assert "[showing lines 3-5" in result.content


async def test_read_file_refuses_binary_and_names_a_wrong_encoding(ws):
    (ws / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert "binary" in (await run("read_file", path="img.png")).content
    (ws / "latin.txt").write_bytes("café".encode("latin-1"))
    wrong = await run("read_file", path="latin.txt")
    assert not wrong.ok and "utf-8" in wrong.content
    assert (await run("read_file", path="latin.txt", encoding="latin-1")).content == "café"
    assert "Unknown encoding 'klingon'" in (await run("read_file", path="a.md", encoding="klingon")).content


async def test_read_file_of_a_directory(ws):
    assert "src is a directory" in (await run("read_file", path="src")).content


async def test_several_roots_are_addressed_by_name(tmp_path):
    docs, code = tmp_path / "docs", tmp_path / "code"
    docs.mkdir()
    code.mkdir()
    (docs / "guide.md").write_text("guide")
    (code / "main.py").write_text("main")
    with override_settings(TOOLS_ALLOWED_DIRS=[str(docs), f"src={code}"]):
        assert json.loads((await run("ls")).content)["entries"] == ["docs/", "src/"]
        listing = json.loads((await run("ls", path="src")).content)
        assert listing == {"path": "src", "entries": ["main.py"], "count": 1}
        result = await run("read_file", path="docs/guide.md")
        assert result.content == "guide" and result.data["path"] == "docs/guide.md"
        assert "Unknown workspace 'other'" in (await run("read_file", path="other/x")).content
        assert "'docs', 'src'" in registry.get("ls").describe()
        top = await run("read_file", path=".")
        assert not top.ok and "not a file" in top.content and "failed unexpectedly" not in top.content


async def test_the_default_workspace_is_created_on_first_use(tmp_path):
    root = tmp_path / "fresh" / "workspace"
    with override_settings(TOOLS_ALLOWED_DIRS=[str(root)]):
        assert (await run("ls")).ok
    assert root.is_dir()
