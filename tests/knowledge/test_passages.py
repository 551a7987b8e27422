"""Notes cut into passages: overlap, headings, titles and names."""

from __future__ import annotations

from knowledge.passages import is_note, note_names, note_title, split_passages


def test_passages_overlap_and_cover_every_line():
    lines = [f"line {number}" for number in range(1, 26)]
    passages = split_passages(lines)
    assert [(p.start_line, p.end_line) for p in passages] == [(1, 10), (8, 17), (15, 24), (22, 25)]
    assert passages[1].body.split("\n")[0] == "line 8"


def test_a_heading_starts_a_passage_and_names_the_ones_below():
    lines = ["# Birds", "", "intro", "## Heron", "grey", "### Nest", "mill pond", "## Owl", "barn"]
    passages = split_passages(lines)
    assert [(p.start_line, p.heading) for p in passages] == [
        (1, "Birds"),
        (4, "Birds › Heron"),
        (6, "Birds › Heron › Nest"),
        (8, "Birds › Owl"),
    ]


def test_blank_sections_and_huge_lines():
    assert split_passages(["", "   ", ""]) == []
    (passage,) = split_passages(["x" * 100_000])
    assert len(passage.body) == 1000


def test_title_names_and_which_files_are_notes():
    assert note_title("a/heron-log.md", ["intro", "# Grey heron"]) == "Grey heron"
    assert note_title("a/heron-log.md", ["## Only a section"]) == "heron-log"
    assert note_names("birds/heron-log.md", "Grey heron") == "birds heron log Grey heron"
    assert note_names("birds/heron_log.md", "heron log") == "birds heron log"
    assert [is_note(name) for name in ("a.md", "b.TXT", "c.markdown", ".hidden.md", "d.py", "e.pdf")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
