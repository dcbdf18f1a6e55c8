"""A long prompt joins running streams: how long do they pause, and when does it get an answer?

lmlab's engine reads prompts at most `--prefill-chunk` tokens a step (default 128), so a long
prompt is read over several steps while the running sequences keep getting a token every step
(chunked prefill, as vLLM and llama.cpp's server do). This runs the same load against two lmlab
servers, one after the other: the default, and one that reads every prompt whole in one step
(`--prefill-chunk 100000`, lmlab before chunking). Load: 4 streaming chat clients; a second
after they start, a fifth request brings a ~1,500-token prompt (the start of WikiText-2's test
text). Reported: the longest pause between two tokens of any running stream, the long request's
time to first token, and the streams' tokens/s.

Usage: python benchmarks/serve_long_prompt.py [--streams 4] [--prompt-chars 6000] [--chunk 128]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from itertools import pairwise
from pathlib import Path

import httpx
from serve import free_port, start, token_times

from lmlab.models import DEFAULT_LM

WIKITEXT = Path(__file__).parents[1] / ".." / "shared" / "data" / "wikitext-2" / "test.txt"


async def stream(client, url, content: str, max_tokens: int) -> list[float]:
    """One streamed chat answer: its start time, then each content chunk's arrival time."""
    body = {
        "model": DEFAULT_LM,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 1,
        "stream": True,
    }
    return await token_times(client, url, body)


async def scenario(url: str, streams: int, long_text: str) -> dict:
    async with httpx.AsyncClient(timeout=600) as client:

        async def late():
            await asyncio.sleep(1.0)
            return await stream(client, url, f"Summarize this text.\n\n{long_text}", 4)

        questions = ["Tell me about the history of Paris.", "How do bees make honey?"]
        tasks = [stream(client, url, questions[k % 2], 200) for k in range(streams)]
        *running, joining = await asyncio.gather(*tasks, late())
    gaps = [b - a for times in running for a, b in pairwise(times[1:])]
    tokens = sum(len(t) - 1 for t in running)
    wall = max(t[-1] for t in running) - min(t[0] for t in running)
    return {
        "pause_s": max(gaps),
        "ttft_s": joining[1] - joining[0],
        "tokens_per_s": tokens / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--prompt-chars", type=int, default=6000)
    parser.add_argument("--chunk", type=int, default=128)
    args = parser.parse_args()
    long_text = WIKITEXT.read_text()[: args.prompt_chars]
    settings = {f"prompts read {args.chunk} tokens a step": args.chunk, "read whole": 100_000}
    for name, chunk in settings.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "lmlab", "serve", "--embedding-model", ""]
        process = start([*command, "--prefill-chunk", str(chunk), "--port", str(port)], url)
        try:
            asyncio.run(scenario(url, 1, "Warm up."))
            row = asyncio.run(scenario(url, args.streams, long_text))
        finally:
            process.terminate()
            process.wait()
        print(
            f"{name:>32}: longest pause of the {args.streams} streams {row['pause_s']:.2f} s, "
            f"long prompt's first token after {row['ttft_s']:.2f} s, "
            f"streams {row['tokens_per_s']:.1f} tokens/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
