"""A generated folder of personal notes, for the knowledge base's benchmark and tests.

Notes are Markdown: a title, a few sections, paragraphs of everyday English words drawn with a
Zipf-like skew (so common words are common, as in real notes). The same words as the facts'
appear all over the corpus, so a fact's note must win on ranking, not on a unique word.
Facts (bench/knowledge_questions.json) are planted as one line of their note; the corpus is
the same for the same seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

QUESTIONS_FILE = Path(__file__).with_name("knowledge_questions.json")

WORDS = """
time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government
number night point home water room mother area money story fact month lot right study book eye
job word business issue side kind head house service friend father power hour game line end
member law car city community name president team minute idea kid body information back parent
face others level office door health person art war history party result change morning reason
research girl guy moment air teacher force education garden kitchen recipe bread flour oven
butter sugar salt pepper garlic onion tomato soup salad chicken rice pasta cheese apple lemon
coffee tea wine beer train flight hotel ticket passport airport station museum beach mountain
lake river forest bird heron owl sparrow fox deer dog cat horse boat bike road bridge tower
castle church market shop bank loan tax salary budget invoice rent insurance doctor dentist
appointment medicine allergy vitamin exercise running swimming yoga knee back tooth meeting
project deadline client report slide email phone laptop password server backup printer router
camera lens photo album song guitar piano concert movie novel poem author chapter library
birthday wedding gift letter card holiday summer winter spring autumn january february march
april may june july august september october november december monday tuesday wednesday
thursday friday saturday sunday red blue green yellow black white old new small large long
short early late quick slow warm cold wet dry quiet loud bright dark cheap expensive broken
fixed open closed full empty first last next best worst good bad happy tired busy free
plant water paint clean cook bake buy sell pay send call visit meet read write fix build move
start finish forget remember plan book cancel order return borrow lend share keep lose find
north south east west left right near far above below inside outside before after during
""".split()

_SYLLABLES = "ka lo mi ner tas vel dor quin bra sel mon rik tal fen gor lis pra dun wex zo hal bren cor".split()


# The long tail of real notes: names, places, jargon. Each is rare; together they are 15% of
# the words (a vocabulary of only common words would make every word match most passages).
def _tail(count: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return sorted({"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(count)})


TAIL = _tail(30_000)

HEADINGS = ["Notes", "Ideas", "To do", "Log", "Details", "Plans", "Links", "Questions", "Summary", "Thoughts"]
FOLDERS = ["journal", "work", "home", "travel", "recipes", "people", "health", "money", "projects", "reading"]


@dataclass(frozen=True)
class Question:
    note: str  # path of the note that holds the fact
    fact: str  # the line planted in it
    question: str  # asked of the search, in other words than the fact where possible


def questions() -> list[Question]:
    return [Question(**entry) for entry in json.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))]


def _paragraph(rng: random.Random, words: int) -> list[str]:
    # Zipf-like: index ~ len * u**3 favours the first (most common) words of the list.
    chosen = [
        rng.choice(TAIL) if rng.random() < 0.15 else WORDS[int(len(WORDS) * rng.random() ** 3)] for _ in range(words)
    ]
    lines, line = [], []
    for word in chosen:
        line.append(word)
        if len(line) >= rng.randint(8, 14):
            lines.append(" ".join(line).capitalize() + ".")
            line = []
    if line:
        lines.append(" ".join(line).capitalize() + ".")
    return lines


def note_text(rng: random.Random, title: str, target_bytes: int) -> list[str]:
    lines = [f"# {title}", ""]
    size = len(title)
    while size < target_bytes:
        heading = f"## {rng.choice(HEADINGS)}"
        paragraph = _paragraph(rng, rng.randint(30, 90))
        lines += [heading, "", *paragraph, ""]
        size += len(heading) + sum(len(line) + 1 for line in paragraph)
    return lines


def corpus_write(root: Path, notes: int, *, note_bytes: int = 5000, seed: int = 7) -> list[Question]:
    """`notes` generated notes under `root`, the questions' facts planted in theirs (created
    when the generated ones do not hold that path). Returns the questions."""
    rng = random.Random(seed)
    planted = questions()
    by_note = {}
    for question in planted:
        by_note.setdefault(question.note, []).append(question.fact)
    for number in range(notes):
        folder = FOLDERS[number % len(FOLDERS)]
        words = [WORDS[int(len(WORDS) * rng.random() ** 2)] for _ in range(rng.randint(2, 4))]
        path = f"{folder}/{'-'.join(words)}-{number}.md"
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / path).write_text("\n".join(note_text(rng, " ".join(words).capitalize(), note_bytes)) + "\n")
    for path, facts in by_note.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = note_text(rng, Path(path).stem.replace("-", " ").capitalize(), note_bytes)
        for fact in facts:
            lines.insert(rng.randint(3, len(lines)), fact)
        target.write_text("\n".join(lines) + "\n")
    return planted


def fact_line(root: Path, question: Question) -> int:
    """The 1-based line of the question's fact in its note."""
    lines = (root / question.note).read_text().splitlines()
    return lines.index(question.fact) + 1
