"""The library cost: the same Agents SDK runs on the same model route, with no server, in a
process of its own so its CPU can be measured. Prints one JSON object.

`--client route` is the server's own route (the SDK's native Chat Completions model on the
client `chat.openai_client.openai_client_build` makes); `--client stock` is the SDK on the stock
OpenAI client, for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, RunConfig, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from bench.measure import ARRIVALS, StreamTiming, cpu_seconds, load, stamps
from chat.heap import heap_settle
from chat.openai_client import openai_client_build

CLIENTS = ("route", "stock")


async def one_run(agent: Agent, config: RunConfig) -> StreamTiming:
    timing = StreamTiming()
    started = time.time()
    result = Runner.run_streamed(agent, "hi", run_config=config)
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta" and event.data.delta:
            now = time.time()
            timing.ttft = timing.ttft if timing.ttft is not None else now - started
            timing.chunk_latency += [now - sent for sent in stamps(event.data.delta)]
            timing.chunks += 1
    timing.ok = True
    return timing


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--arrival", choices=ARRIVALS, default="burst")
    parser.add_argument("--span", type=float, default=0.0, help="one reply's length, seconds (steady arrival)")
    parser.add_argument("--client", choices=CLIENTS, default="route")
    args = parser.parse_args()
    set_tracing_disabled(True)
    base_url, key = f"{args.url}/v1", "sk-bench"
    client = (
        openai_client_build(base_url=base_url, api_key=key, timeout=600)
        if args.client == "route"
        else AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)
    )
    agent = Agent(
        name="bench",
        instructions="You are a benchmark.",
        model=OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client),
        model_settings=ModelSettings(include_usage=True),
    )
    config = RunConfig(tracing_disabled=True)
    await one_run(agent, config)  # warm: imports and first-use costs are not the steady state
    heap_settle()  # as the server does after its warm-up
    cpu_before = cpu_seconds(os.getpid())
    runs = await load(args.k, arrival=args.arrival, span=args.span, turn=lambda _: one_run(agent, config))
    cpu = cpu_seconds(os.getpid()) - cpu_before
    measured = [t for t in runs.measured if t.ok]
    print(
        json.dumps(
            {
                "cpu_seconds": cpu,
                "chunks": sum(t.chunks for t in runs.every),
                "failed": sum(not t.ok for t in runs.every),
                "ttft": [t.ttft for t in measured if t.ttft is not None],
                "chunk_latency": [x for t in measured for x in t.chunk_latency],
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
