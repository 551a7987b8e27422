"""The knowledge base: index a generated folder of notes, then time searches and measure recall.

    python3 -m bench.knowledge                 # 10,000 notes of ~5 KB (~50 MB), 1,000 searches
    python3 -m bench.knowledge --smoke         # 300 small notes, 100 searches: seconds (20 with --semantic)
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/kb_bench python3 -m bench.knowledge
    python3 -m bench.knowledge --semantic      # 400 notes, then semantic search measured against FTS

It runs on a SQLite file of its own (or BENCH_DATABASE_URL), never on the server's database.
Figures: the full index (seconds, files/s, peak memory of the process, database size), a scan
that finds nothing changed and one that finds one changed file (what a search pays once per
KNOWLEDGE_SCAN_INTERVAL), search latency p50/p99 over the queries (the 50 questions of
bench/knowledge_questions.json, keywords with one rarer word, common words only), and
recall@5 / recall@1 of
the 50 questions (the fact's note among the first 5 / first cited notes) and how often the
cited line is the fact's own line. Prints them and writes JSON (bench/results/knowledge.json).

With --semantic (KNOWLEDGE_SEMANTIC; 400 notes by default, as embedding costs about 40 ms of CPU
a passage) it then embeds every passage and measures, in the same run against the same FTS
baseline: passages embedded a second, memory with the model and the vectors loaded, the time to
load the vectors into a process, the query's embedding, hybrid search p50/p99, and recall@5 /
recall@1 for FTS alone, vectors alone and hybrid.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.knowledge_corpus import TAIL, WORDS, corpus_write, fact_line
from bench.measure import cpu_seconds, django_setup, percentile, results_write

PROJECT = Path(__file__).resolve().parent.parent
# Passages of the 10,000-note corpus (bench figures in docs/knowledge.md).
LARGE_PASSAGES = 175_506


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def database_bytes() -> int:
    from django.conf import settings
    from django.db import connection

    if connection.vendor == "sqlite":
        name = settings.DATABASES["default"]["NAME"]
        return sum(
            Path(f"{name}{suffix}").stat().st_size for suffix in ("", "-wal") if Path(f"{name}{suffix}").exists()
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size('knowledge_chunk') + pg_total_relation_size('knowledge_document')"
        )
        return int(cursor.fetchone()[0])


def server_pid() -> int | None:
    """The PostgreSQL server process of this connection (None on SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def queries(count: int, questions: list[Any], seed: int = 11) -> list[tuple[str, str]]:
    """(class, query): 40% the questions, 40% keywords (common words and one rarer word, as a
    model searches for a name), 20% common words only, the worst case for ranking."""
    rng = random.Random(seed)
    mixed = []
    for number in range(count):
        common = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
        if number % 5 in (0, 1):
            mixed.append(("question", questions[number % len(questions)].question))
        elif number % 5 in (2, 3):
            mixed.append(("keywords", " ".join([*common, rng.choice(TAIL)])))
        else:
            mixed.append(("common", " ".join([*common, rng.choice(WORDS)])))
    return mixed


def recall(questions: list[Any], notes_dir: Path, search: Any) -> dict[str, float]:
    """recall@5, recall@1 and how often the fact's own line is cited, for `search(question)`."""
    at5 = at1 = line_exact = 0
    for question in questions:
        hits = search(question.question)
        paths = [hit.path for hit in hits]
        at5 += question.note in paths
        at1 += bool(paths) and paths[0] == question.note
        line_exact += any(hit.path == question.note and hit.line == fact_line(notes_dir, question) for hit in hits)
    count = len(questions)
    return {"recall_at_5": at5 / count, "recall_at_1": at1 / count, "cited_fact_line": line_exact / count}


def measure(notes_dir: Path, notes: int, note_bytes: int, searches: int) -> tuple[dict[str, Any], list[Any]]:
    from knowledge.indexer import index_update
    from knowledge.models import Chunk, Document
    from knowledge.search import query_terms, search_passages

    started = time.monotonic()
    questions = corpus_write(notes_dir, notes, note_bytes=note_bytes)
    corpus_bytes = sum(path.stat().st_size for path in notes_dir.rglob("*.md"))
    generated_s = time.monotonic() - started
    time.sleep(1.1)  # past the indexer's racy-mtime window, so the scans below read nothing again

    rss_before = rss_kib()
    started = time.monotonic()
    report = index_update(rebuild=True)
    index_s = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    files = report.added

    started = time.monotonic()
    unchanged = index_update()
    scan_unchanged_s = time.monotonic() - started
    changed_note = notes_dir / questions[0].note
    changed_note.write_text(changed_note.read_text() + "\nOne more line.\n")
    started = time.monotonic()
    index_update()
    scan_one_changed_s = time.monotonic() - started
    assert unchanged.unchanged == files, unchanged

    # CPU time, which waiting for a core does not inflate: this process's (SQLite searches in it)
    # and, on PostgreSQL, the server process's.
    server = server_pid()
    timings: dict[str, list[float]] = {}
    cpu: list[float] = []
    server_cpu: list[float] = []
    for kind, query in queries(searches, questions):
        started, started_cpu = time.perf_counter(), time.process_time()
        started_server = cpu_seconds(server) if server else 0.0
        search_passages(query_terms(query), 5)
        timings.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        if server:
            server_cpu.append((cpu_seconds(server) - started_server) * 1000)
    every = [ms for kind in timings.values() for ms in kind]

    scores = recall(questions, notes_dir, lambda question: search_passages(query_terms(question), 5))
    return {
        "notes": files,
        "corpus_mb": round(corpus_bytes / 1e6, 1),
        "chunks": Chunk.objects.count(),
        "documents": Document.objects.count(),
        "generate_s": round(generated_s, 1),
        "index_s": round(index_s, 1),
        "index_files_per_s": round(files / index_s),
        "index_rss_growth_mib": round((peak_kib - rss_before) / 1024, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "database_mb": round(database_bytes() / 1e6, 1),
        "scan_unchanged_ms": round(scan_unchanged_s * 1000, 1),
        "scan_one_changed_ms": round(scan_one_changed_s * 1000, 1),
        "searches": len(every),
        "search_p50_ms": round(percentile(every, 50), 2),
        "search_p99_ms": round(percentile(every, 99), 2),
        "search_max_ms": round(max(every), 2),
        "search_cpu_p50_ms": round(percentile(cpu, 50), 2),
        "search_cpu_p99_ms": round(percentile(cpu, 99), 2),
        **(
            {
                "search_server_cpu_p50_ms": round(percentile(server_cpu, 50), 2),
                "search_server_cpu_p99_ms": round(percentile(server_cpu, 99), 2),
            }
            if server_cpu
            else {}
        ),
        "search_by_kind": {
            kind: {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2)}
            for kind, ms in timings.items()
        },
        "questions": len(questions),
        **scores,
    }, questions


def measure_semantic(notes_dir: Path, questions: list[Any], searches: int) -> dict[str, Any]:
    from knowledge.models import Chunk
    from knowledge.search import Hit, query_terms, search_passages
    from knowledge.semantic.encoder import DIMENSIONS, encoder
    from knowledge.semantic.vectors import VectorIndex, vectors_update

    rss_before = rss_kib()
    started = time.monotonic()
    encoder()
    model_load_s = time.monotonic() - started
    started = time.monotonic()
    cpu_started = time.process_time()
    embedded = vectors_update()
    embed_s, embed_cpu_s = time.monotonic() - started, time.process_time() - cpu_started
    index = VectorIndex()
    started = time.monotonic()
    index.sync()
    sync_s = time.monotonic() - started
    started = time.monotonic()
    index.sync()
    resync_s = time.monotonic() - started
    rss_loaded = rss_kib()

    import knowledge.semantic.vectors as vectors

    vectors._index = index
    embed_ms = []
    for _, query in queries(100, questions):
        started = time.perf_counter()
        encoder().embed([query])
        embed_ms.append((time.perf_counter() - started) * 1000)
    hybrid_ms = []
    for _, query in queries(searches, questions):
        started = time.perf_counter()
        search_passages(query_terms(query), 5, meaning=query)
        hybrid_ms.append((time.perf_counter() - started) * 1000)

    paths = dict(Chunk.objects.values_list("id", "document__path"))

    # Ranking all vectors costs in proportion to their number: time it at the 10,000-note
    # corpus's size too (175,506 passages), with random unit vectors (their values do not
    # change the cost; embedding that corpus would take two hours here).
    large = VectorIndex()
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((LARGE_PASSAGES, DIMENSIONS), dtype=np.float32)
    large._ids, large._matrix = np.arange(LARGE_PASSAGES), matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    large_ms = []
    for _ in range(100):
        started = time.perf_counter()
        large.nearest(matrix[int(rng.integers(LARGE_PASSAGES))], 50)
        large_ms.append((time.perf_counter() - started) * 1000)
    del large, matrix

    def vectors_alone(question: str) -> list[Hit]:
        nearest = index.nearest(encoder().embed([question])[0], 5)
        return [Hit("", paths[chunk_id], 0, 0, "", [], 0.0) for chunk_id, _ in nearest]

    return {
        "passages_embedded": embedded,
        "model_load_s": round(model_load_s, 2),
        "embed_s": round(embed_s, 1),
        "embed_passages_per_s": round(embedded / embed_s, 1),
        "embed_cpu_ms_per_passage": round(embed_cpu_s / embedded * 1000, 1),
        "vectors_load_ms": round(sync_s * 1000, 1),
        "vectors_resync_ms": round(resync_s * 1000, 1),
        "rss_with_model_and_vectors_mib": round((rss_loaded - rss_before) / 1024, 1),
        "query_embed_p50_ms": round(percentile(embed_ms, 50), 2),
        "query_embed_p99_ms": round(percentile(embed_ms, 99), 2),
        "hybrid_search_p50_ms": round(percentile(hybrid_ms, 50), 2),
        "hybrid_search_p99_ms": round(percentile(hybrid_ms, 99), 2),
        "rank_175k_vectors_p50_ms": round(percentile(large_ms, 50), 2),
        "rank_175k_vectors_p99_ms": round(percentile(large_ms, 99), 2),
        "recall": {
            "fts": recall(questions, notes_dir, lambda question: search_passages(query_terms(question), 5)),
            "vectors": recall(questions, notes_dir, vectors_alone),
            "hybrid": recall(
                questions, notes_dir, lambda question: search_passages(query_terms(question), 5, meaning=question)
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--note-bytes", type=int, default=5000, help="approximate size of a generated note")
    parser.add_argument("--searches", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--semantic", action="store_true", help="then embed and measure hybrid search against FTS")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "knowledge.json"))
    args = parser.parse_args()
    if args.semantic and args.notes == parser.get_default("notes"):
        args.notes = 400
    if args.smoke:
        # With --semantic, few notes: embedding 1,300 passages would take half a minute.
        args.notes, args.note_bytes, args.searches = (20 if args.semantic else 300), 600, 100
    with tempfile.TemporaryDirectory(prefix="bench-knowledge-") as temp:
        notes_dir = Path(temp) / "notes"
        notes_dir.mkdir()
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{temp}/bench.sqlite3"
        django_setup(database_url, KNOWLEDGE_DIRS=str(notes_dir))
        from django.db import connection

        figures, questions = measure(notes_dir, args.notes, args.note_bytes, args.searches)
        result = {"database": connection.vendor, **figures}
        if args.semantic:
            result["semantic"] = measure_semantic(notes_dir, questions, args.searches)
        connection.close()
    print(
        f"{result['database']}: {result['notes']} notes ({result['corpus_mb']} MB, {result['chunks']} passages) "
        f"indexed in {result['index_s']} s ({result['index_files_per_s']} files/s), "
        f"peak RSS {result['peak_rss_mib']} MiB (+{result['index_rss_growth_mib']}), "
        f"database {result['database_mb']} MB\n"
        f"scan: nothing changed {result['scan_unchanged_ms']} ms, one file changed {result['scan_one_changed_ms']} ms\n"
        f"search over {result['searches']} queries: p50 {result['search_p50_ms']} ms, "
        f"p99 {result['search_p99_ms']} ms, max {result['search_max_ms']} ms, "
        f"CPU p50 {result['search_cpu_p50_ms']} / p99 {result['search_cpu_p99_ms']} ms"
        + (
            f", server CPU p50 {result['search_server_cpu_p50_ms']} / p99 {result['search_server_cpu_p99_ms']} ms"
            if "search_server_cpu_p50_ms" in result
            else ""
        )
        + " ("
        + ", ".join(f"{kind} p50/p99 {v['p50_ms']}/{v['p99_ms']}" for kind, v in result["search_by_kind"].items())
        + ")\n"
        f"{result['questions']} questions: recall@5 {result['recall_at_5']:.2f}, recall@1 {result['recall_at_1']:.2f}, "
        f"fact's own line cited {result['cited_fact_line']:.2f}"
    )
    if args.semantic:
        semantic = result["semantic"]
        print(
            f"semantic: {semantic['passages_embedded']} passages embedded in {semantic['embed_s']} s "
            f"({semantic['embed_passages_per_s']}/s, {semantic['embed_cpu_ms_per_passage']} ms of CPU each), "
            f"model load {semantic['model_load_s']} s, vectors loaded in {semantic['vectors_load_ms']} ms "
            f"(re-sync {semantic['vectors_resync_ms']} ms), +{semantic['rss_with_model_and_vectors_mib']} MiB\n"
            f"query embedding p50/p99 {semantic['query_embed_p50_ms']}/{semantic['query_embed_p99_ms']} ms; "
            f"hybrid search p50/p99 {semantic['hybrid_search_p50_ms']}/{semantic['hybrid_search_p99_ms']} ms "
            f"(FTS alone {result['search_p50_ms']}/{result['search_p99_ms']}); ranking 175,506 vectors "
            f"p50/p99 {semantic['rank_175k_vectors_p50_ms']}/{semantic['rank_175k_vectors_p99_ms']} ms\n"
            + "\n".join(
                f"  {name:8} recall@5 {r['recall_at_5']:.2f}, recall@1 {r['recall_at_1']:.2f}, "
                f"fact's line cited {r['cited_fact_line']:.2f}"
                for name, r in semantic["recall"].items()
            )
        )
    results_write(args.out, result)


if __name__ == "__main__":
    main()
