"""How often the README's server example answers right with the server's default sampling.

Sends the README's capital-of-France chat request (its exact JSON body: no sampling fields, no
seed) N times (20 by default) to a live `lmlab serve` and counts the answers that name Paris.
Goal (issue 28): at least 18 of 20 with the default `--sampling-defaults model` (2 of 20 with
OpenAI's temperature 1 and no filtering, the server's defaults before).

By default the script starts `lmlab serve` with the bundled models on a free port (passing
`--sampling-defaults` on); `--url` targets a server already running instead.

Usage: python benchmarks/default_answers.py [--requests 20] [--sampling-defaults model]
       [--url http://127.0.0.1:8000] [--max-tokens N] [--show]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import Server

# the README's curl example, as it sends it
README_BODY = {
    "model": "smollm2-135m-instruct",
    "messages": [
        {"role": "system", "content": "You are a terse geography tutor."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
}


def ask(url: str, body: dict) -> str:
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--sampling-defaults", default="model", help="for the server started")
    parser.add_argument("--url", help="a running server instead of starting one")
    parser.add_argument(
        "--max-tokens", type=int, help="bound each answer (not in the README's body)"
    )
    parser.add_argument("--show", action="store_true", help="print every answer")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    body = dict(README_BODY)
    if args.max_tokens:
        body["max_tokens"] = args.max_tokens
    server = None if args.url else Server("--sampling-defaults", args.sampling_defaults)
    url = args.url or server.url
    try:
        card = httpx.get(f"{url}/v1/models/{body['model']}", timeout=60).json()
        print(f"server defaults for {body['model']}: {card.get('sampling_defaults')}")
        with ThreadPoolExecutor(4) as pool:  # four at a time: the server batches them
            answers = list(pool.map(lambda _: ask(url, body), range(args.requests)))
    finally:
        if server is not None:
            server.stop()
    right = sum("paris" in a.lower() for a in answers)
    if args.show:
        for a in answers:
            print(f"{'ok ' if 'paris' in a.lower() else 'NO '} {a!r}")
    print(f"{right}/{len(answers)} answers name Paris")


if __name__ == "__main__":
    main()
