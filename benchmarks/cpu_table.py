"""One benchmark table for this CPU: each speed goal of lmlab against its peer, side by side.

Every section runs lmlab and its peer in this one run, with the other benchmark scripts'
own functions (nothing here measures in its own way):
  decode  one stream, greedy, 128 new tokens, the bundled model: lmlab's llama backend
          against llama-cpp-python's `generate` loop on the same file (benchmarks/generate.py)
  chat    lmlab serve against llama.cpp's llama-server (`--parallel 8`, continuous batching;
          on lmlab's file and on the model's other weights) and llama-cpp-python's server, at 1
          and 8 streaming clients, same threads (benchmarks/serve.py's load: 3 requests a
          client, 64 tokens; medians of the rounds), next to the model alone in process
  embed   lmlab's default and fast paths against sentence-transformers, 3,000 mixed-length
          and 3,000 short texts (benchmarks/embed.py)
  ngram   interpolated Kneser-Ney 5-grams trained and scored by lmlab and by NLTK on a PTB
          subset (NLTK is too slow for all of it; benchmarks/ngram.py), and lmlab's KN5 on all
          of PTB against the published perplexity
  train   Tiny Shakespeare, nanoGPT's CPU configuration: `lmlab train gpt` against nanoGPT's
          train.py (`--nanogpt DIR`, a checkout with data/shakespeare_char prepared; the row is
          left out without it) (benchmarks/train_shakespeare.py)
The header names the CPU (model, cores, the flags that choose kernels), the library versions
and the date; each row gives the load average (1 minute) at its section's start and end, since
other work on the machine slows both sides of a row alike but not the rows alike.

The table is written as markdown to `--out` (atomically, after each section: an interrupted
run keeps what it measured) and printed. `--quick` takes smaller
sizes (a few minutes in all): one decode run, one chat round with llama-server only, 500 texts
a set, a smaller n-gram subset, 300 training steps.

Usage: python benchmarks/cpu_table.py [--only decode,chat,embed] [--quick] [--out cpu_table.md]
       [--nanogpt DIR] [--chat-repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
import time
from datetime import date
from importlib import metadata
from pathlib import Path

SECTIONS = ("decode", "chat", "embed", "ngram", "train")
VERSIONS = ("lmlab", "llama-cpp-python", "torch", "onnxruntime", "sentence-transformers", "nltk")


def load1() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def decode(args: argparse.Namespace) -> list[str]:
    """lmlab's llama backend against llama-cpp-python's loop, one stream, greedy."""
    import generate

    from lmlab.models import DEFAULT_LM, llama_file, resolve

    gguf = llama_file(resolve(DEFAULT_LM))  # what lmlab.generate runs one sequence from
    repeats = 1 if args.quick else 3
    start = load1()
    rates = generate.llama_rates(gguf, 128, repeats, os.cpu_count() or 1)
    ours, peer = rates["lmlab llama"], rates["llama-cpp-python"]
    what = f"decode: 1 stream, greedy, 128 tokens, {gguf.name}, median of {repeats}, tokens/s"
    load = f"{start:.1f}-{load1():.1f}"
    return [row(what, f"{ours:.1f}", f"llama-cpp-python {peer:.1f}", f"**{ours / peer:.2f}x**",
                load)]  # fmt: skip


def chat(args: argparse.Namespace) -> list[str]:
    """lmlab serve against llama-server (and llama-cpp-python's server) at 1 and 8 clients."""
    import serve

    peers = ["llama-server"] if args.quick else list(serve.PEERS)
    options = ["--concurrency", "1", "8", "--requests-per-client", "3", "--max-tokens", "64",
               "--embed-requests", "0", "--repeats", str(1 if args.quick else args.chat_repeats),
               "--peers", *peers]  # fmt: skip
    chat_args = serve.parser().parse_args(options)
    serve.prepare(chat_args)
    start = load1()
    ceiling = serve.decode_ceiling(chat_args)  # the threads as lmlab serve picks them
    runs, _ = serve.run_rounds(serve.servers(chat_args), chat_args)
    rows = serve.medians(runs)
    load = f"{start:.1f}-{load1():.1f}"
    rounds = f"median of {chat_args.repeats}" if chat_args.repeats > 1 else "1 round"
    threads = f"-t {chat_args.threads} -tb {chat_args.threads_batch}"
    lines = []
    for n in (1, 8):
        ours = rows.get(("lmlab", n))
        if ours is None:
            continue
        bound = ours["tokens_per_s"] / ceiling[n]
        what = (f"chat: {n} streaming client{'s' * (n > 1)}, tokens/s (first token), {rounds}; "
                f"{threads}")  # fmt: skip
        mine = (
            f"{ours['tokens_per_s']:.1f} ({ours['ttft_s']:.2f} s; {bound:.0%} of the model alone)"
        )
        peers = [p for p, m in rows if m == n and p != "lmlab"]  # llama-server first
        for peer in peers:
            theirs = rows[peer, n]
            label = f"{peer} -np {chat_args.llama_server_parallel}"
            if not peer.startswith("llama-server"):
                label = f"{peer}'s server"
            lines.append(row(
                what, mine, f"{label} {theirs['tokens_per_s']:.1f} ({theirs['ttft_s']:.2f} s)",
                f"**{ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x**", load,
            ))  # fmt: skip
        if not peers:
            lines.append(row(what, mine, "no peer ran (see the note printed)", "", load))
    return lines


def embed(args: argparse.Namespace) -> list[str]:
    """lmlab's default and fast encoders against sentence-transformers, mixed and short texts."""
    import embed as bench

    n = 500 if args.quick else 3_000
    encoders, _, _ = bench.contenders(32)
    mixed, short = bench.mixed_texts(n), bench.stsb_sentences(n)
    bench.drop_slow_bfloat16(encoders, mixed)
    peer = "sentence-transformers"
    lines = []
    for title, texts in ((f"{n:,} mixed-length texts", mixed), (f"{n:,} short texts", short)):
        start = load1()
        results = bench.race(encoders, texts, 3)
        load = f"{start:.1f}-{load1():.1f}"
        table = {r["name"]: r for r in bench.table(results, peer)}
        for name, r in table.items():
            if not name.startswith("lmlab"):
                continue
            if name == "lmlab default":
                closeness = f"max \\|cos − 1\\| {bench.largest_gap(results, peer):.1e}"
            else:
                closeness = f"least cos {r['least_cos']:.5f}"
            what = f"embeddings: {title}, batch 32, texts/s: {name} ({closeness})"
            lines.append(row(what, f"{r['texts_per_s']:.1f}",
                             f"{peer} {table[peer]['texts_per_s']:.1f}",
                             f"**{r['ratio']:.2f}x**", load))  # fmt: skip
            if name.startswith("lmlab fast") and bench.BF16 in table:  # what its user can do
                theirs = table[bench.BF16]
                lines.append(row(
                    f"{what}, against sentence-transformers after `.to(torch.bfloat16)` "
                    f"(least cos {theirs['least_cos']:.5f})", f"{r['texts_per_s']:.1f}",
                    f"{bench.BF16} {theirs['texts_per_s']:.1f}",
                    f"**{r['texts_per_s'] / theirs['texts_per_s']:.2f}x**", load,
                ))  # fmt: skip
    return lines


def ngram(args: argparse.Namespace) -> list[str]:
    """Kneser-Ney 5-grams: lmlab and NLTK on a PTB subset; lmlab on all of PTB."""
    import ngram as bench

    from lmlab.lm.ngram.model import NgramLM

    n_train, n_test = (500, 20) if args.quick else (2_000, 50)
    train = bench.ptb_sentences("train")[:n_train]
    test = bench.ptb_sentences("test")[:n_test]
    start = load1()
    with tempfile.TemporaryDirectory() as tmp:
        kn = bench.kn_against_nltk(
            bench.write_sentences(Path(tmp) / "train.txt", train),
            bench.write_sentences(Path(tmp) / "test.txt", test), train, test, 5,
        )  # fmt: skip
    lines = [row(
        f"KN5 (interpolated kn) trained on {n_train:,} PTB sentences, scored on {n_test}: seconds "
        f"(perplexity; NLTK's KN differs by definition)", f"{kn['lmlab_s']:.2f} "
        f"({kn['lmlab_ppl']:.1f})", f"NLTK {kn['nltk_s']:.1f} ({kn['nltk_ppl']:.1f})",
        f"**{kn['nltk_s'] / kn['lmlab_s']:.0f}x**", f"{start:.1f}-{load1():.1f}",
    )]  # fmt: skip
    start = load1()
    begin = time.perf_counter()
    lm = NgramLM.train(bench.PTB / "ptb.train.txt", order=5, smoothing="mkn")
    seconds = time.perf_counter() - begin
    ppl = lm.evaluate_file(bench.PTB / "ptb.test.txt").perplexity
    lines.append(row(
        "KN5 (modified kn) on all of PTB: training seconds (test perplexity)",
        f"{seconds:.1f} ({ppl:.2f})", f"SRILM, published: ({bench.PUBLISHED_KN5})", "",
        f"{start:.1f}-{load1():.1f}",
    ))  # fmt: skip
    return lines


def train(args: argparse.Namespace) -> list[str]:
    """`lmlab train gpt` against nanoGPT's train.py, nanoGPT's CPU configuration."""
    import train_shakespeare as bench

    if args.nanogpt is None:
        print("train: left out (pass --nanogpt DIR, a nanoGPT checkout with shakespeare_char)")
        return []
    steps = 300 if args.quick else 2000
    start = load1()
    with tempfile.TemporaryDirectory() as tmp:
        ours = bench.ours(steps, Path(tmp) / "run", "auto", "rope")
    peer = bench.nanogpt(steps, args.nanogpt)
    return [row(
        f"GPT training, Tiny Shakespeare, nanoGPT's CPU configuration, {steps} steps: seconds "
        "(validation loss)", f"{ours['seconds']:.1f} ({ours['valid_loss']:.3f})",
        f"nanoGPT {peer['seconds']:.1f} ({peer['valid_loss']:.3f})",
        f"**{peer['seconds'] / ours['seconds']:.2f}x**", f"{start:.1f}-{load1():.1f}",
    )]  # fmt: skip


def header(argv: list[str]) -> list[str]:
    """The CPU, the command, the versions and the date."""
    from embed import cpu_line

    versions = []
    for name in VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    command = shlex.join(["python", "benchmarks/cpu_table.py", *argv])
    return [
        f"### {cpu_line().removeprefix('CPU: ')}, {date.today().isoformat()}",
        "",
        f"`{command}`; {', '.join(versions)}. Each row: lmlab and its peer side by side in one "
        "run, the ratio lmlab's speed over the peer's, and the load average (1 minute) at the "
        "start and end of its section.",
        "",
        row("benchmark", "lmlab", "peer", "ratio", "load"),
        row(*["---"] * 5),
    ]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="e.g. decode,chat,embed")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    parser.add_argument("--out", type=Path, default=Path("cpu_table.md"))
    parser.add_argument("--nanogpt", type=Path, help="a prepared nanoGPT checkout (train)")
    parser.add_argument("--chat-repeats", type=int, default=3, help="chat rounds (medians)")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := [s for s in args.only if s not in SECTIONS]:
        parser.error(f"unknown section {unknown[0]!r}: choose from {', '.join(SECTIONS)}")
    if args.chat_repeats < 1:
        parser.error("--chat-repeats must be 1 or more")
    if args.nanogpt is not None and not (args.nanogpt / "train.py").is_file():
        parser.error(f"--nanogpt {args.nanogpt}: no train.py there (a nanoGPT checkout)")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    from lmlab.home import atomic_write_text

    lines = header(argv)
    print("\n".join(lines[:3]), flush=True)
    runs = {"decode": decode, "chat": chat, "embed": embed, "ngram": ngram, "train": train}
    for section in (s for s in SECTIONS if s in args.only):  # in the table's order
        print(f"\n== {section} (load average {load1():.2f})", flush=True)
        lines += runs[section](args)
        atomic_write_text(args.out, "\n".join(lines) + "\n")  # an interrupted run keeps these
    print("\n" + "\n".join(lines) + f"\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
