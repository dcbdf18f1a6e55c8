"""Speculative decoding by prompt lookup against plain decoding, side by side in one run.

A fixed set of chat requests on the bundled chat model (llama backend, what users run), greedy,
at most 128 new tokens: input-grounded ones (rewrite, extract, quote, summarise a paragraph
given in the request), where the answer copies its input and drafts are often right, and
open-ended ones, where drafts are rarely proposed. Each request runs plainly and with
`speculative="prompt-lookup"`, alternating which goes first, each on an empty cache (no
prefix reuse). Reported per group: tokens per second of each and their ratio,
whether every answer has the same tokens, and the CPU and load.

Goals (issue 33): >= 1.5x on input-grounded requests, >= 0.95x on open-ended ones.

Usage: python benchmarks/speculative.py [--rounds 2] [--max-tokens 128] [--num-draft K]
                                        [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import lmlab
from lmlab.models import DEFAULT_LM, load_lm

PARAGRAPHS = [
    "The city council voted on Monday to extend the night bus service on three routes, after a "
    "survey found that more than two thousand residents travel to work before six in the "
    "morning. The extension will cost about four hundred thousand euros a year and will be "
    "paid for by a small increase in parking fees in the city centre. Buses will run every "
    "twenty minutes between midnight and five, starting in March.",
    "Honey bees communicate the location of food through a movement called the waggle dance. A "
    "forager that has found a rich patch of flowers returns to the hive and walks in a figure "
    "of eight, shaking her body during the straight part of the run. The angle of that run "
    "relative to vertical tells the other bees the direction of the food relative to the sun, "
    "and the length of the run tells them how far away it is.",
    "Our quarterly report shows revenue of 4.2 million dollars, up 12 percent from the same "
    "quarter last year. Operating costs rose by 5 percent, mainly because of higher energy "
    "prices and two new hires in the support team. The board approved a dividend of 30 cents "
    "per share, payable on the fifteenth of next month to shareholders of record on the first.",
    "The library will close for renovation from the first of June until the end of August. "
    "During that time, books can be returned at the town hall, and the reading room will move "
    "to the community centre on Elm Street, open from nine to five on weekdays. Online services, "
    "including e-books and the catalogue, will remain available throughout the renovation.",
]

GROUNDED = [
    ("quote", "Copy the following paragraph exactly, word for word:\n\n{0}"),
    ("rewrite", "Rewrite the following paragraph in simpler words, keeping every fact:\n\n{1}"),
    ("extract", "List every number in this text, each with the words around it:\n\n{2}"),
    ("summarise", "Summarise this announcement in three sentences:\n\n{3}"),
    ("quote", "Repeat the second and third sentences of this paragraph:\n\n{0}"),
    ("rewrite", "Rewrite this paragraph as a list of short bullet points:\n\n{1}"),
]
OPEN_ENDED = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "What are three good habits for learning a new language? Explain each briefly.",
    "Describe a walk through a forest in autumn.",
    "Why do people enjoy music? Give a few reasons.",
]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def timed(lm, messages, max_tokens: int, **spec) -> tuple[list[int], float]:
    start = time.perf_counter()
    out = lmlab.chat(lm, messages, temperature=0, max_tokens=max_tokens, **spec)
    return out.token_ids, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--num-draft", type=int, default=None)
    parser.add_argument("--backend", default="llama")
    parser.add_argument(
        "--threads", type=int, default=None, help="llama.cpp threads (default: all cores)"
    )
    args = parser.parse_args()
    options = {"n_threads": args.threads} if args.threads else {}
    lm = load_lm(DEFAULT_LM, backend=args.backend, **options)
    # every request starts on an empty cache: neither run reads the other's prompt, and the
    # cells of both lie in the same places (llama.cpp's rounding depends on where they lie)
    lm.reuses_prefixes = False
    spec = dict(speculative="prompt-lookup", num_draft=args.num_draft)
    groups = {
        "input-grounded": [
            (kind, [{"role": "user", "content": text.format(*PARAGRAPHS)}])
            for kind, text in GROUNDED
        ],
        "open-ended": [("open", [{"role": "user", "content": q}]) for q in OPEN_ENDED],
    }
    threads = f", {args.threads} threads" if args.threads else ""
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); {lm.name} ({args.backend}{threads})")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    timed(lm, groups["open-ended"][0][1], 8)  # warm-up
    results = {}
    for group, requests in groups.items():
        tokens = {False: 0, True: 0}
        seconds = {False: 0.0, True: 0.0}
        same = True
        for r in range(args.rounds):
            for i, (kind, messages) in enumerate(requests):
                ids = {}
                order = (False, True) if (r + i) % 2 == 0 else (True, False)
                for speculate in order:
                    ids[speculate], took = timed(
                        lm, messages, args.max_tokens, **(spec if speculate else {})
                    )
                    tokens[speculate] += len(ids[speculate])
                    seconds[speculate] += took
                if ids[True] != ids[False]:
                    same = False
                    print(f"  different tokens: {group} request {i} ({kind})")
                if r == 0:
                    print(
                        f"  {group} {i} ({kind}): {len(ids[False])} tokens",
                        flush=True,
                    )
        plain, fast = tokens[False] / seconds[False], tokens[True] / seconds[True]
        results[group] = (plain, fast, same)
        print(
            f"{group}: plain {plain:.1f} tokens/s, prompt lookup {fast:.1f} tokens/s: "
            f"{fast / plain:.2f}x; same tokens: {'yes' if same else 'NO'}",
            flush=True,
        )
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
