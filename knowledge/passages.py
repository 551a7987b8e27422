"""A note's text cut into passages: a few lines each, overlapping, never across a heading.

Each passage carries the headings above it, so a passage under "## Heron" matches a search for
"heron" even when its own lines never say the word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text"})
LINES_PER_PASSAGE = 10
OVERLAP = 3
# A minified or generated file can hold megabytes on one line: searching it is useless, and the
# passage would swamp the model's context.
MAX_LINE_CHARS = 1000
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_NAME_SEPARATORS = re.compile(r"[/_.\-]+")


@dataclass(frozen=True)
class Passage:
    start_line: int  # 1-based
    end_line: int
    heading: str
    body: str


def is_note(name: str) -> bool:
    return not name.startswith(".") and PurePosixPath(name).suffix.lower() in SUFFIXES


def note_names(path: str, title: str) -> str:
    """The words of a note's path and title, searched with the passage (`heron-notes.md` → heron notes)."""
    stem = PurePosixPath(path).with_suffix("").as_posix()
    words = _NAME_SEPARATORS.sub(" ", stem).strip()
    return words if title.lower() in words.lower() else f"{words} {title}"


def note_title(path: str, lines: list[str]) -> str:
    """The first top-level heading, else the file name without its suffix."""
    for line in lines[:50]:
        match = _HEADING.match(line)
        if match and len(match.group(1)) == 1:
            return match.group(2)[:300]
    return PurePosixPath(path).stem[:300]


def split_passages(lines: list[str]) -> list[Passage]:
    """Windows of LINES_PER_PASSAGE lines stepping by LINES_PER_PASSAGE - OVERLAP; a heading
    starts a new passage. Blank-only windows are dropped."""
    passages: list[Passage] = []
    trail: list[tuple[int, str]] = []  # (level, text) of the headings above the current line
    section_start = 0
    for index, line in enumerate([*lines, None]):
        match = _HEADING.match(line) if line is not None else None
        if line is not None and not match:
            continue
        passages.extend(_windows(lines, section_start, index, " › ".join(text for _, text in trail)))
        if match:
            level = len(match.group(1))
            trail = [(lvl, text) for lvl, text in trail if lvl < level] + [(level, match.group(2))]
            section_start = index  # the heading line belongs to its section's first passage
    return passages


def _windows(lines: list[str], start: int, end: int, heading: str) -> list[Passage]:
    result = []
    step = LINES_PER_PASSAGE - OVERLAP
    position = start
    while position < end:
        stop = min(position + LINES_PER_PASSAGE, end)
        body = "\n".join(line[:MAX_LINE_CHARS] for line in lines[position:stop])
        if body.strip():
            result.append(Passage(start_line=position + 1, end_line=stop, heading=heading, body=body))
        if stop == end:
            break
        position += step
    return result
