"""Compare two checkouts of the server on one load: what a change costs or saves.

    git worktree add /tmp/before HEAD~1
    python3 -m bench.ab /tmp/before .                        # one-chunk turns: the cost of a turn
    python3 -m bench.ab /tmp/before . --chunks 200 --sdk     # 200-chunk replies, and the SDK alone
    python3 -m bench.ab . . --chunks 200 --env-b FAST_PATHS=false   # one checkout, two settings
    python3 -m bench.ab . . --chunks 200 --env-a METRICS=0 --env-b PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) \
        --env-b OTEL_EXPORTER_OTLP_ENDPOINT=sink         # metrics and traces on against off

Both servers (uvicorn, one worker, each checkout on a SQLite file of its own) run side by side
against one fake provider; each serves an unmeasured warm-up round, then their rounds of K
clients (steady arrivals unless `--arrival burst`) alternate, first A then B, then B then A.
The speed of a shared VM drifts over minutes by more than most changes move it (SDK-only runs
of one load spread 151-185 us a chunk within an hour): two `bench.run` runs one after the other
cannot tell such a change from the drift, while alternated rounds put the drift on both sides.
`--env-a` and `--env-b` add settings to one side's server only, so one checkout can be compared
with itself under another setting; `OTEL_EXPORTER_OTLP_ENDPOINT=sink` sends a side's traces to a
receiver on 127.0.0.1 started here (tests/otlp_receiver.py). With `--sdk`, a round of the SDK
alone (`bench.sdk_baseline`, this checkout's agent, on the servers' event loop) runs beside each
pair (after it, then before the next), and each side's own layer is `bench.layer.own_layer_pct`:
the same measurement and the same definition as `bench.run`'s "own cpu %". Prints each round's
server CPU per chunk (per turn, with `--chunks 1`) and the medians, and writes JSON
(bench/results/ab.json unless --out).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.layer import cpu, layered_rounds, own_layer_pct, server_loop
from bench.measure import ARRIVALS, results_write
from bench.run import server_env, start_fake
from tests.otlp_receiver import OtlpReceiver
from tests.servers import PROJECT, Server


def checkout_env(
    base: dict[str, str], checkout: Path, database: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The bench's server settings (and this side's `extra` ones), on a database that this
    checkout's migrations made."""
    env = {**base, **(extra or {}), "DATABASE_URL": f"sqlite:///{database}"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=checkout, env=env, check=True)
    return env


async def compare(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dreamytin-ab-"))
    (tmp / "ws").mkdir()
    fake, url = start_fake(tmp, args.chunks, 1 / args.rate, args.ttft)
    span = args.ttft + args.chunks / args.rate
    servers: dict[str, Server] = {}
    loop = server_loop("uvicorn")  # the SDK alone runs on the servers' event loop
    sink = OtlpReceiver(keep=False).start()  # `OTEL_EXPORTER_OTLP_ENDPOINT=sink`: traces to here
    try:
        env = server_env(tmp, url)
        for name, checkout, extra in (("A", args.a, args.env_a), ("B", args.b, args.env_b)):
            if extra.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "sink":
                extra = {**extra, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
            tree_env = checkout_env(env, checkout, tmp / f"{name}.sqlite3", extra)
            servers[name] = Server("uvicorn", tree_env, tmp / f"{name}.log", checkout=checkout)
        measured = await layered_rounds(
            servers, env, k=args.k, arrival=args.arrival, span=span, pairs=args.rounds, loop=loop, sdk=args.sdk
        )
    finally:
        for server in servers.values():
            server.stop()
        fake.terminate()
        fake.wait(10)
        sink.stop()
    for name, results in measured.items():
        failed = [index for index, result in enumerate(results) if result["failed"]]
        if failed:
            raise RuntimeError(f"{name}: turns failed in rounds {failed}")
    shutil.rmtree(tmp)  # only after a good run: a failed one leaves its server logs there
    rounds = {name: cpu(results) for name, results in measured.items()}
    for index in range(args.rounds):
        print(f"round {index}: " + "  ".join(f"{name} {values[index]}" for name, values in rounds.items()))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    report: dict[str, Any] = {
        "config": {
            "a": str(args.a),
            "b": str(args.b),
            "env_a": args.env_a,
            "env_b": args.env_b,
            "k": args.k,
            "chunks": args.chunks,
            "arrival": args.arrival,
            "rounds": args.rounds,
            "sdk_loop": loop,
        },
        "cpu_us_per_chunk": rounds,
        "spans_received": sink.count,
        "load_1min": {name: [r["load_1min"] for r in results] for name, results in measured.items()},
        "median": medians,
        "b_over_a_pct": round((medians["B"] / medians["A"] - 1) * 100, 1),
        "pairs_b_over_a_pct": [round((b / a - 1) * 100, 1) for a, b in zip(rounds["A"], rounds["B"], strict=True)],
    }
    if args.sdk:
        report["own_layer_pct"] = {name: own_layer_pct(rounds[name], rounds["sdk"]) for name in ("A", "B")}
    return report


def env_setting(text: str) -> tuple[str, str]:
    """`NAME=value`, one setting for one side's server."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=value, got {text!r}")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="checkout A (the baseline)")
    parser.add_argument("b", type=Path, help="checkout B (the change)")
    parser.add_argument("--k", type=int, default=200, help="concurrent streams")
    parser.add_argument("--chunks", type=int, default=1, help="chunks per stream")
    parser.add_argument("--rate", type=float, default=20.0, help="chunks per second per stream")
    parser.add_argument("--ttft", type=float, default=0.2, help="fake time to first token, seconds")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each server")
    parser.add_argument("--arrival", choices=ARRIVALS, default="steady", help="see bench.measure.load")
    parser.add_argument(
        "--sdk", action="store_true", help="also run the SDK alone beside each round (our layer's cost)"
    )
    parser.add_argument("--env-a", type=env_setting, action="append", default=[], help="NAME=value for A's server")
    parser.add_argument("--env-b", type=env_setting, action="append", default=[], help="NAME=value for B's server")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "ab.json"))
    args = parser.parse_args()
    args.a, args.b = args.a.resolve(), args.b.resolve()
    args.env_a, args.env_b = dict(args.env_a), dict(args.env_b)
    report = asyncio.run(compare(args))
    medians = report["median"]
    print(f"median cpu us/chunk: A {medians['A']}  B {medians['B']}  B/A {report['b_over_a_pct']:+}%")
    print(f"each pair, B/A %: {report['pairs_b_over_a_pct']}")
    print(f"spans received from the servers: {report['spans_received']}")
    if "own_layer_pct" in report:
        own = report["own_layer_pct"]
        print(f"SDK alone {medians['sdk']}: our layer (bench.layer.own_layer_pct) A {own['A']:+}%, B {own['B']:+}%")
    results_write(args.out, report)


if __name__ == "__main__":
    main()
