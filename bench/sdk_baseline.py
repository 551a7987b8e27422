"""The library cost: the same Agents SDK runs as the server's, with no server, in a process of
its own so its CPU can be measured. Prints one JSON object.

"The same runs" means the server's own agent (`chat.turn.agent.agent_build`: its instructions, tools
and model route, from the same settings) on the same conversations: with steady arrivals each
client's second turn replays its first. The history is kept in a list in memory, so storing
it is counted in the server's own layer, as are the consumer, the event mapping and JSON.

`--client route` is the server's own route (the SDK's native Chat Completions model on the
client `chat.openai_client.openai_client_build` makes); `--client stock` is the same agent on
the stock OpenAI client, for reference.

`--loop` is the event loop to run on: the server's own, so that what it saves or costs is not
counted as the server's layer (uvicorn runs on uvloop when it is installed, Daphne on asyncio's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Coroutine
from typing import Any

import django
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from bench.measure import ARRIVALS, StreamTiming, cpu_seconds, load, stamps
from chat.gc_tuning import gc_settle

CLIENTS = ("route", "stock")
LOOPS = ("asyncio", "uvloop")


class MemorySession:
    """An Agents SDK session on a list: the history, with no storage cost."""

    session_settings = None

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return self.items[-limit:] if limit else list(self.items)

    async def add_items(self, items: list[Any]) -> None:
        self.items.extend(items)

    async def pop_item(self) -> Any | None:
        return self.items.pop() if self.items else None

    async def clear_session(self) -> None:
        self.items.clear()


async def one_run(agent: Agent[Any], config: RunConfig, session: MemorySession) -> StreamTiming:
    timing = StreamTiming()
    started = time.time()
    result = Runner.run_streamed(agent, "hi", run_config=config, session=session)
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta" and event.data.delta:
            now = time.time()
            timing.ttft = timing.ttft if timing.ttft is not None else now - started
            timing.chunk_latency += [now - sent for sent in stamps(event.data.delta)]
            timing.chunks += 1
    timing.ok = True
    return timing


def server_agent(model_id: str, client: str) -> Agent[Any]:
    """The agent the server builds for `model_id`, from the settings in the environment."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dreamytin.settings")
    django.setup()
    from chat.catalog import catalog_get  # these need Django set up
    from chat.turn.agent import agent_build

    model = catalog_get().get(model_id)
    if model is None:
        raise SystemExit(f"unknown model {model_id!r}")
    agent = agent_build(model)
    if client == "stock":
        stock = AsyncOpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="sk-bench", max_retries=0)
        agent = agent.clone(model=OpenAIChatCompletionsModel(model=model.provider_model, openai_client=stock))
    return agent


async def measure(args: argparse.Namespace) -> None:
    agent = server_agent(args.model, args.client)
    set_tracing_disabled(True)
    config = RunConfig(tracing_disabled=True, workflow_name="DreamyTin chat")
    await one_run(agent, config, MemorySession())  # warm: first-use costs are not the steady state
    gc_settle()  # as the server does after its warm-up
    sessions = [MemorySession() for _ in range(args.k)]  # one conversation per client, as in the server
    cpu_before = cpu_seconds(os.getpid())
    runs = await load(args.k, arrival=args.arrival, span=args.span, turn=lambda i: one_run(agent, config, sessions[i]))
    cpu = cpu_seconds(os.getpid()) - cpu_before
    measured = [t for t in runs.measured if t.ok]
    print(
        json.dumps(
            {
                "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],  # what it really ran on
                "cpu_seconds": cpu,
                "chunks": sum(t.chunks for t in runs.every),
                "failed": sum(not t.ok for t in runs.every),
                "ttft": [t.ttft for t in measured if t.ttft is not None],
                "chunk_latency": [x for t in measured for x in t.chunk_latency],
            }
        )
    )


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on the event loop named `loop` (one of LOOPS)."""
    loop_factory = None
    if loop == "uvloop":
        import uvloop  # only where the server runs on it

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a model id of the server's catalog (MODELS_FILE)")
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--arrival", choices=ARRIVALS, default="burst")
    parser.add_argument("--span", type=float, default=0.0, help="one reply's length, seconds (steady arrival)")
    parser.add_argument("--client", choices=CLIENTS, default="route")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    args = parser.parse_args()
    run_on(args.loop, measure(args))


if __name__ == "__main__":
    main()
