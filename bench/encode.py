"""What building one stream frame costs the server's event loop: the turn's text delta as the
JSON text the socket sends (`chat.wire.TurnFrames`), against the generic way it was built
before (a dict per frame, the encoder over it, the time from `datetime`), in the same run.

    python3 -m bench.encode            # five timings of 200,000 frames of each, a few seconds
    python3 -m bench.encode --smoke

Prints µs a frame and writes JSON (bench/results/encode.json unless --out).
"""

from __future__ import annotations

import argparse
import timeit
from datetime import UTC, datetime

from bench.measure import results_write
from chat.protocol import Stream, event_fields
from chat.wire import TurnFrames, json_encode
from tests.servers import PROJECT

TURN = {
    "model": "gpt-4o",
    "conversation_id": "bench-steady-200-17",
    "message_id": "3f1c2a9e-54d1-4f7e-9c4a-1b2c3d4e5f60",  # a turn id
}
DELTA = Stream(content="1732488000.123456 ")  # the benchmark provider's token: its send time


def generic_frame(seq: int) -> str:
    return json_encode({**event_fields(DELTA), "timestamp": datetime.now(UTC).isoformat(), **TURN, "seq": seq})


def measure(frames: int, repeats: int) -> dict[str, float]:
    turn = TurnFrames(**TURN)
    costs = {
        "generic_us_per_frame": min(timeit.repeat(lambda: generic_frame(1), number=frames, repeat=repeats)),
        "turn_frames_us_per_frame": min(timeit.repeat(lambda: turn.encode(DELTA), number=frames, repeat=repeats)),
    }
    return {name: round(seconds / frames * 1e6, 3) for name, seconds in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200_000, help="frames per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings of each; the fastest is reported")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "encode.json"))
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.repeats = 1000, 1
    result = measure(args.frames, args.repeats)
    print(
        f"stream frame: generic {result['generic_us_per_frame']} us, "
        f"chat.wire.TurnFrames {result['turn_frames_us_per_frame']} us"
    )
    results_write(args.out, result)


if __name__ == "__main__":
    main()
