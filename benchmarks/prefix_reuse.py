"""The next turn of a conversation with and without prefix reuse, on both backends.

A conversation's second request repeats the first (system prompt, question, the answer) and adds
a question. With prefix reuse the model starts from the keys and values the first request left
(kept after it finished) and reads only what is new; without, it reads the whole prompt again.
Reported per backend: the prompt's tokens, how many were shared, and the time to the first token
of the second turn (median of `--rounds`), with reuse and without, alternating.

Usage: python benchmarks/prefix_reuse.py [--backends llama torch] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lmlab
from lmlab.models import DEFAULT_LM, load_lm

SYSTEM = (
    "You are a patient economics tutor. Explain ideas in plain words, with one short example "
    "each time, and never use jargon without defining it first."
)
QUESTION = "What is inflation, and why do central banks care about it?"


def second_turn(lm, k: int) -> tuple[float, int, int]:
    """Seconds to the first token of a second turn, its prompt tokens and those shared."""
    first = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    answer = lmlab.chat(lm, first, max_tokens=48, temperature=0).text
    turn = [
        *first,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": f"Give me another example, number {k}."},
    ]
    before = lm.reused_tokens
    start = time.perf_counter()
    reply = lmlab.chat(lm, turn, max_tokens=1, temperature=0)
    seconds = time.perf_counter() - start
    return seconds, len(reply.prompt_token_ids), lm.reused_tokens - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["llama", "torch"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for backend in args.backends:
        lm = load_lm(DEFAULT_LM, backend=backend)
        second_turn(lm, 0)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        for k in range(args.rounds):
            for reuse in (True, False):
                lm.reuses_prefixes = reuse
                seconds, tokens, shared = second_turn(lm, k)
                times[reuse].append(seconds)
                if reuse:
                    prompt, reused = tokens, shared
        on, off = statistics.median(times[True]), statistics.median(times[False])
        print(
            f"{backend}: second turn of {prompt} tokens, {reused} shared; first token after "
            f"{on:.3f} s with reuse, {off:.3f} s without ({off / on:.1f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
