"""The benchmark's provider: the tests' fake provider in a process of its own, answering every
request with N stamped chunks at a fixed interval after a fixed time to first token."""

from __future__ import annotations

import argparse
import signal
import threading

from tests.fake_provider import STAMP, FakeProvider, Reply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--ttft", type=float, default=0.2)
    args = parser.parse_args()
    server = FakeProvider()
    server.default = Reply(text=[f"{STAMP} "] * args.chunks, interval=args.interval, ttft=args.ttft, stamp=True)
    # Requests are not kept: the benchmark sends thousands.
    server.requests = _Discard()
    server.start()
    with open(args.port_file, "w") as handle:
        handle.write(str(server.port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
