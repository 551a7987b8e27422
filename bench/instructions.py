"""Our layer in instructions: the Agents SDK alone against the real server, both under
valgrind's callgrind, which counts instructions instead of timing them.

CPU time on this shared VM moves by ±10% between runs of the same code, and more from one day to
the next; the instructions a process executes do not. Both sides run the same N turns of one
client, in sequence, each on a conversation of its own, after two warm-up turns; callgrind
counts only while the N turns run (`callgrind_control -i on`, then `off`). The server's count
is everything its process executes for them: the SDK, our layer, Channels and uvicorn.

What it leaves out, which `bench.run`'s CPU figures include: the kernel's work (the socket
writes to the clients), and how fast the instructions run (caches, and the other processes on
the two cores). Counts still vary by about 1.5% between runs, with timing: how often a read
finds more than one chunk. The provider sends a chunk every 20 ms, slower than valgrind runs
a chunk, so each read finds one, as in a real stream.

    python3 -m bench.instructions                    # 5 turns of 200 chunks: SDK alone, uvicorn
    python3 -m bench.instructions --servers uvicorn,daphne
    python3 -m bench.instructions --smoke

Needs valgrind. Prints the figures and writes JSON (bench/results/instructions.json unless --out).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.layer import server_loop
from bench.measure import ChatClient, results_write
from bench.run import server_env, start_fake
from bench.sdk_baseline import LOOPS, run_on
from tests.servers import PROJECT, Server

MODEL = "gpt-4o"
WARM_TURNS = 2
START_TIMEOUT = 600.0  # seconds: a process starts ten times slower under valgrind


def callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def instrument(pid: int, on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True, capture_output=True)


def instructions_read(out: Path) -> int:
    match = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"callgrind wrote no totals to {out}")
    return int(match.group(1))


# --- the SDK alone: this module runs itself under valgrind with --child ---------------------


async def sdk_child(gate: Path, turns: int) -> None:
    """Warm up, then wait at the gate while the parent switches counting on; run the turns and
    report the chunks; wait again while it switches counting off."""
    from agents import RunConfig, set_tracing_disabled

    from bench.sdk_baseline import MemorySession, one_run, server_agent
    from chat.gc_tuning import gc_settle

    agent = server_agent(MODEL, "route")
    set_tracing_disabled(True)
    config = RunConfig(tracing_disabled=True, workflow_name="DreamyTin chat")
    for _ in range(WARM_TURNS):
        await one_run(agent, config, MemorySession())
    gc_settle()  # as the server does after its warm-up
    await _gate_pass(gate, say="ready", wait_for="go")
    chunks = 0
    for _ in range(turns):
        chunks += (await one_run(agent, config, MemorySession())).chunks
    await _gate_pass(gate, say=f"done {chunks}", wait_for="exit")


async def _gate_pass(gate: Path, *, say: str, wait_for: str) -> None:
    gate.write_text(say)
    while gate.read_text() != wait_for:
        await asyncio.sleep(0.1)


def _gate_wait(gate: Path, prefix: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SDK process exited ({process.returncode}) before it said {prefix!r}")
        text = gate.read_text() if gate.exists() else ""
        if text.startswith(prefix):
            return text
        time.sleep(0.2)
    raise TimeoutError(f"the SDK process did not say {prefix!r}")


def sdk_count(tmp: Path, env: dict[str, str], turns: int, loop: str) -> dict[str, Any]:
    """The SDK alone on `loop`, the event loop of the server it is compared with."""
    gate, out = tmp / f"sdk-{loop}.gate", tmp / f"sdk-{loop}.callgrind"
    command = [*callgrind(out), sys.executable, "-m", "bench.instructions", "--child", str(gate)]
    command += ["--turns", str(turns), "--loop", loop]
    with (tmp / f"sdk-{loop}.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _gate_wait(gate, "ready", process)
        instrument(process.pid, on=True)
        gate.write_text("go")
        chunks = int(_gate_wait(gate, "done", process).split()[1])
        instrument(process.pid, on=False)
        gate.write_text("exit")
        process.wait(START_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    return {"chunks": chunks, "instructions": instructions_read(out)}


# --- the real server, as a user runs it, under valgrind -------------------------------------


async def server_count(tmp: Path, env: dict[str, str], kind: str, turns: int) -> dict[str, Any]:
    out = tmp / f"{kind}.callgrind"
    # In a thread: the start takes a minute under valgrind, and the smoke run's SDK process
    # starts beside it.
    server = await asyncio.to_thread(
        Server, kind, env, tmp / f"{kind}.log", wrapper=callgrind(out), start_timeout=START_TIMEOUT
    )
    try:
        # A connection of its own for every turn, opened before counting starts: the handshake
        # is not a turn's cost.
        url = f"ws://127.0.0.1:{server.port}/ws/instructions-{kind}"
        clients = [ChatClient(f"{url}-{i}") for i in range(WARM_TURNS + turns)]
        for client in clients:
            await client.open()
        for client in clients[:WARM_TURNS]:
            await client.turn("hi", MODEL)
        instrument(server.process.pid, on=True)
        chunks = 0
        for client in clients[WARM_TURNS:]:
            timing = await client.turn("hi", MODEL)
            if not timing.ok:
                raise RuntimeError(f"a turn on {kind} failed")
            chunks += timing.chunks
        instrument(server.process.pid, on=False)
        for client in clients:
            await client.close()
    finally:
        server.stop(START_TIMEOUT)  # callgrind writes its counts as the process exits
    return {"chunks": chunks, "instructions": instructions_read(out)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dreamytin-instructions-"))
    (tmp / "ws").mkdir()
    fake, url = start_fake(tmp, args.chunks, args.interval, 0.05)
    # A fixed hash seed: the same dict layouts, so the same instructions, run after run.
    env = {**server_env(tmp, url), "PYTHONHASHSEED": "0"}
    loops = sorted({server_loop(kind) for kind in args.servers})
    try:
        # One at a time: a process waiting for a core would find several chunks in one read.
        # The smoke run checks that everything runs, not the counts: the SDK's processes start
        # beside the servers, which halves its minutes.
        sdk_counts = asyncio.ensure_future(_sdk_counts(tmp, env, args.turns, loops))
        if not args.smoke:
            await sdk_counts
        servers = {kind: await server_count(tmp, env, kind, args.turns) for kind in args.servers}
        sdk = await sdk_counts
    finally:
        fake.terminate()
        fake.wait(10)
    shutil.rmtree(tmp)  # only after a good run: a failed one leaves its logs there
    report: dict[str, Any] = {
        "config": {"turns": args.turns, "chunks": args.chunks, "interval_s": args.interval},
        "sdk": {loop: {**counted, "per_chunk": _per_chunk(counted)} for loop, counted in sdk.items()},
        "servers": {},
    }
    for kind, counted in servers.items():
        loop = server_loop(kind)
        baseline = report["sdk"][loop]["per_chunk"]
        report["servers"][kind] = {
            **counted,
            "loop": loop,
            "per_chunk": _per_chunk(counted),
            "own_layer_pct": round((counted["instructions"] / counted["chunks"] / baseline - 1) * 100, 1),
        }
    return report


async def _sdk_counts(tmp: Path, env: dict[str, str], turns: int, loops: list[str]) -> dict[str, dict[str, Any]]:
    return {loop: await asyncio.to_thread(sdk_count, tmp, env, turns, loop) for loop in loops}


def _per_chunk(counted: dict[str, Any]) -> int:
    return round(counted["instructions"] / counted["chunks"])


def print_report(report: dict[str, Any]) -> None:
    config, sdk = report["config"], report["sdk"]
    print(f"{config['turns']} turns of {config['chunks']} chunks; user-space instructions per chunk (callgrind)")
    for loop, row in sdk.items():
        print(f"  SDK alone on {loop:<8} {row['per_chunk']:>9,}")
    for kind, row in report["servers"].items():
        print(
            f"  {kind:<21} {row['per_chunk']:>9,}   our layer over the SDK on {row['loop']}: {row['own_layer_pct']:+}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=200, help="chunks per reply")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between chunks")
    parser.add_argument("--servers", default="uvicorn", help="uvicorn and/or daphne")
    parser.add_argument("--smoke", action="store_true", help="one short turn: checks the benchmark works")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the SDK-alone process, under valgrind
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "instructions.json"))
    args = parser.parse_args()
    if args.child:
        run_on(args.loop, sdk_child(Path(args.child), args.turns))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (Debian: apt install valgrind)")
    if args.smoke:
        args.turns, args.chunks = 1, 5
    args.servers = args.servers.split(",")
    report = asyncio.run(measure(args))
    print_report(report)
    results_write(args.out, report)


if __name__ == "__main__":
    main()
