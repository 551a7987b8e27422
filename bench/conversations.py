"""Conversation search (`GET /conversations?q=`): generate conversations, then time searches.

    python3 -m bench.conversations              # 10,000 conversations, 200,000 messages, 1,000 searches
    python3 -m bench.conversations --smoke      # 200 conversations, 100 searches: seconds
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/conv_bench python3 -m bench.conversations
    BENCH_DATABASE_URL=… python3 -m bench.conversations --reuse   # search the corpus an earlier run wrote

It runs on a SQLite file of its own (or BENCH_DATABASE_URL, which it empties first), never on the
server's database. Each conversation has 10 turns of 2 messages (20 messages): the user's
question (~12 words), the assistant's answer (~60 words) or, every fifth turn, a tool's result
(~80 words), in everyday English words drawn with a Zipf-like skew plus a long tail of rare
names (`bench.knowledge_corpus`). The conversations belong to USERS users.

Searches are timed through `chat.search.conversation_search` (ranking, snippets and the list
rows, all the endpoint does but JSON), as one user (their own conversations only) and with no
users (AUTH_MODE none: every conversation): 40% a rare name with common words, 40% three
words of some message, 20% common words only (the worst case). Also: how often the
conversation of the message the three words came from is among the first 5 (recall@5).
Wall-clock times, and this process's CPU time per search (SQLite runs in it) and, on PostgreSQL,
the server process's (`server CPU`): CPU time, which a busy machine does not inflate. Prints the figures and writes JSON
(bench/results/conversations.json).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.knowledge_corpus import TAIL, WORDS
from bench.measure import cpu_seconds, django_setup, percentile, results_write

PROJECT = Path(__file__).resolve().parent.parent
TURNS = 10
USERS = 10
BATCH = 500


def setup_django(database_url: str) -> None:
    django_setup(database_url)
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)  # BENCH_DATABASE_URL may hold an earlier run


def reusable(conversations: int) -> dict[str, Any] | None:
    """The users of the corpus an earlier run wrote into this database, when it has the size
    asked for (writing it again takes minutes on PostgreSQL); else None."""
    from django.contrib.auth import get_user_model

    from chat.models import Conversation

    written = get_user_model().objects.filter(username__startswith="bench").order_by("id")
    users = list(written.values_list("id", flat=True))
    if len(users) == USERS and Conversation.objects.count() == conversations:
        return {"users": users, "seconds": None}
    return None


def words(rng: random.Random, count: int) -> str:
    chosen = [
        rng.choice(TAIL) if rng.random() < 0.15 else WORDS[int(len(WORDS) * rng.random() ** 3)] for _ in range(count)
    ]
    return " ".join(chosen).capitalize() + "."


def generate(conversations: int, seed: int = 5) -> dict[str, Any]:
    """Write the conversations through the ORM (the database's triggers index them as it
    writes); the users, and the seconds it took."""
    from django.contrib.auth import get_user_model

    from chat.models import Conversation, Message, MessageKind, Turn, TurnStatus

    rng = random.Random(seed)
    users = [get_user_model().objects.create(username=f"bench{index}") for index in range(USERS)]
    started = time.monotonic()
    for first in range(0, conversations, BATCH):
        rows, turns, messages = [], [], []
        for number in range(first, min(first + BATCH, conversations)):
            rows.append(
                Conversation(
                    id=f"c{number}", model="gpt-4o", title=words(rng, 5)[:-1], owner_id=users[number % USERS].id
                )
            )
            for index in range(TURNS):
                turn = Turn(conversation_id=f"c{number}", model="gpt-4o", status=TurnStatus.COMPLETE)
                turns.append(turn)
                messages.append(Message(turn=turn, position=0, kind=MessageKind.USER, content=words(rng, 12)))
                if index % 5 == 4:
                    result = words(rng, 80)
                    messages.append(
                        Message(turn=turn, position=1, kind=MessageKind.TOOL, content="read_file", tool_result=result)
                    )
                else:
                    messages.append(Message(turn=turn, position=1, kind=MessageKind.ASSISTANT, content=words(rng, 60)))
        Conversation.objects.bulk_create(rows)
        Turn.objects.bulk_create(turns)
        Message.objects.bulk_create(messages, batch_size=2000)
    return {"users": [user.id for user in users], "seconds": time.monotonic() - started}


def queries(count: int, seed: int = 11) -> list[tuple[str, str, str | None]]:
    """(class, query, the conversation it should find or None)."""
    from chat.models import Message

    rng = random.Random(seed)
    total = Message.objects.count()
    ids = list(Message.objects.order_by("id").values_list("id", flat=True)[:: max(1, total // 2000)])
    mixed: list[tuple[str, str, str | None]] = []
    for number in range(count):
        common = [WORDS[int(len(WORDS) * rng.random() ** 3)] for _ in range(rng.randint(1, 2))]
        if number % 5 in (0, 1):
            mixed.append(("name", " ".join([*common, rng.choice(TAIL)]), None))
        elif number % 5 in (2, 3):
            message = Message.objects.select_related("turn").get(id=rng.choice(ids))
            text = (message.tool_result or message.content).rstrip(".").lower().split()
            rare = [word for word in text if word in _TAIL]
            picked = rng.sample(text, min(3, len(text)))
            if rare:
                picked[0] = rng.choice(rare)
            mixed.append(("message", " ".join(picked), message.turn.conversation_id))
        else:
            mixed.append(("common", " ".join([*common, WORDS[int(len(WORDS) * rng.random() ** 3)]]), None))
    return mixed


_TAIL = frozenset(TAIL)


def measure(conversations: int, searches: int, *, reuse: bool) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    from chat.models import Conversation, Message
    from chat.search import conversation_search

    generated = reusable(conversations) if reuse else None
    if generated is None:
        call_command("flush", interactive=False, verbosity=0)  # BENCH_DATABASE_URL may hold an earlier run
        generated = generate(conversations)
    if connection.vendor == "postgresql":
        # As autovacuum does after a tenth of a table changed: the search reads how common its
        # words are from the statistics (migration 0005), and the planner how many turns a
        # conversation has.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_message, chat_conversation, chat_turn")
    owner = generated["users"][0]
    mixed = queries(searches)
    conversation_search(query="warm up", owner_id=None)
    # PostgreSQL searches in its server process (on this machine): its CPU time too, which, as
    # this process's, waiting for a core does not inflate (a parallel query's workers are not in it).
    server = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            server = cursor.fetchone()[0]
    figures: dict[str, Any] = {}
    for label, owner_id in (("one_user", owner), ("no_users", None)):
        timings: dict[str, list[float]] = {}
        cpu: list[float] = []
        server_cpu: list[float] = []
        hits = tried = 0
        for kind, query, expected in mixed:
            started, started_cpu = time.perf_counter(), time.process_time()
            started_server = cpu_seconds(server) if server else 0.0
            found = conversation_search(query=query, owner_id=owner_id, limit=20)
            timings.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            if server:
                server_cpu.append((cpu_seconds(server) - started_server) * 1000)
            mine = expected is not None and (owner_id is None or int(expected[1:]) % USERS == 0)
            if mine:
                tried += 1
                hits += expected in [item.conversation.id for item in found[:5]]
        every = [ms for values in timings.values() for ms in values]
        figures[label] = {
            "searches": len(every),
            "p50_ms": round(percentile(every, 50), 2),
            "p99_ms": round(percentile(every, 99), 2),
            "max_ms": round(max(every), 2),
            # This process's CPU (SQLite runs in it): what a search costs when the machine's
            # other work does not make it wait for a core.
            "cpu_p50_ms": round(percentile(cpu, 50), 2),
            "cpu_p99_ms": round(percentile(cpu, 99), 2),
            **(
                {
                    "server_cpu_p50_ms": round(percentile(server_cpu, 50), 2),
                    "server_cpu_p99_ms": round(percentile(server_cpu, 99), 2),
                }
                if server_cpu
                else {}
            ),
            "by_kind": {
                kind: {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2)}
                for kind, ms in timings.items()
            },
            "recall_at_5": round(hits / tried, 3) if tried else None,
        }
    return {
        "conversations": Conversation.objects.count(),
        "messages": Message.objects.count(),
        "generate_s": round(generated["seconds"], 1) if generated["seconds"] is not None else None,
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--reuse", action="store_true", help="search the corpus already in BENCH_DATABASE_URL if it has this size"
    )
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "conversations.json"))
    args = parser.parse_args()
    if args.smoke:
        args.conversations, args.searches = 200, 100
    with tempfile.TemporaryDirectory(prefix="bench-conversations-") as temp:
        django_setup(os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{temp}/bench.sqlite3")
        from django.db import connection

        result = {"database": connection.vendor, **measure(args.conversations, args.searches, reuse=args.reuse)}
        connection.close()
    written = "reused" if result["generate_s"] is None else f"written and indexed in {result['generate_s']} s"
    print(f"{result['database']}: {result['conversations']} conversations, {result['messages']} messages {written}")
    for label in ("one_user", "no_users"):
        figures = result[label]
        print(
            f"{label}: {figures['searches']} searches p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
            f"max {figures['max_ms']} ms, CPU p50 {figures['cpu_p50_ms']} / p99 {figures['cpu_p99_ms']} ms"
            + (
                f", server CPU p50 {figures['server_cpu_p50_ms']} / p99 {figures['server_cpu_p99_ms']} ms"
                if "server_cpu_p50_ms" in figures
                else ""
            )
            + " ("
            + ", ".join(f"{kind} p50/p99 {v['p50_ms']}/{v['p99_ms']}" for kind, v in figures["by_kind"].items())
            + f"); recall@5 {figures['recall_at_5']}"
        )
    results_write(args.out, result)


if __name__ == "__main__":
    main()
