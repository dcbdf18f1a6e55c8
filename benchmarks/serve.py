"""Serving under concurrent load: lmlab serve against llama.cpp's llama-server and
llama-cpp-python's server.

Every server gets the same GGUF file (the one lmlab serves: for the bundled model its Q4_1
file or its Q8_0 copy, as measured on this CPU), the same threads and the same load: N
concurrent streaming chat clients (N = 1, 4, 8, 16), each sending requests one after another
until the round's total is done. Reported per N: aggregate generated tokens/s, time to first
token, and p50/p99 request latency; then the goal ratios. Tokens are counted as streamed
content chunks (one token each on every server).

llama.cpp's own `llama-server` (what Ollama runs) is the strongest peer: `--parallel 8` slots
with continuous batching, on lmlab's file and, for the bundled model, on its other weights too
(the Q4_1 file as shipped or its Q8_0 copy, whichever lmlab does not serve here). It is built
once outside the package from the llama.cpp sources in llama-cpp-python's sdist
(benchmarks/llama_server.py, ~6 minutes); without cmake or a compiler it is skipped with a
note. llama-cpp-python's server runs with `--interrupt_requests False`: by default it drops a
running stream whenever a new request arrives. `--peers` picks the peers.

Embeddings: 16 concurrent clients sending one sentence per request, against the same requests
sent one by one (the server batches requests that arrive together into one forward pass); next
to it, the encoder alone in this process reading 16 sentences as one batch against one by one.

Ceiling: before the servers start, the model alone steps 1 and N sequences together in this
process (`forward_each`, what the server's engine calls): no server can stream faster than
that, so the ratio it gives bounds the goal ratio of N clients over one.

Repeats (`--repeats K`): K rounds, each starting every server afresh and running every load
again; the summary gives each figure's median over the rounds, then the ratios of the medians.
On a machine whose speed drifts between runs (a VM measured 50 and 81 tokens/s for one
sequence ten minutes apart), one round's ratio says little.

Soak (`--soak SECONDS`): 16 streaming chat clients for that long against lmlab only; reports
failed requests and the server's resident memory over time.

`--backend torch` serves the model through transformers instead (continuous batching in one
torch forward pass; the peers are then skipped, being another backend). `--threads` and
`--threads-batch` set the compute threads of every server, for one sequence decoding alone and
for batches (default: what `lmlab serve` picks, measured in this process, and all cores).

llama-cpp-python's server needs its extras (`make bench` installs them: `pip install -e
'.[bench]'`).

Usage: python benchmarks/serve.py [--max-tokens 64] [--requests-per-client 2] [--soak 600]
       [--backend llama|torch] [--dtype bfloat16] [--threads N] [--threads-batch N]
       [--concurrency 1 8] [--embed-requests 0] [--repeats 3]
       [--peers llama-server llama-server-other llama-cpp-python] [--llama-server-parallel 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import llama_server
from server_process import free_port

from lmlab.lm.gguf_requantize import copy_path
from lmlab.models import BUNDLED, DEFAULT_LM, ModelRef, bundled_path, llama_file, load_lm, resolve
from lmlab.serve.app import batch_threads, decode_threads, pick_decode_threads

PEERS = ("llama-server", "llama-server-other", "llama-cpp-python")

QUESTIONS = [
    "Describe the water cycle.",
    "Tell me about the history of Paris.",
    "Explain what a language model is.",
    "Write a short poem about autumn.",
    "What makes a good cup of tea?",
    "Give advice to a new student.",
    "How do bees make honey?",
    "Why is the sky blue?",
]


def start(command: list[str], url: str) -> subprocess.Popen:
    """Start a server and wait until it answers; a server that exits says why (its last line)."""
    with tempfile.TemporaryFile() as log:  # the server keeps its own handle on it
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    return process
            except httpx.HTTPError:
                time.sleep(0.5)
        process.kill()
        log.seek(0)
        last = (log.read().decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
    sys.exit(f"{' '.join(command[:3])} did not start: {last}")


async def token_times(client, url: str, body: dict) -> list[float]:
    """A streamed chat request: its start time, then the arrival time of each content chunk."""
    times = [time.perf_counter()]
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                times.append(time.perf_counter())
    return times


async def one_request(client, url, model, question, max_tokens):
    """Tokens streamed, time to the first, and the whole request's time."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "stream": True,
    }
    start = time.perf_counter()
    times = await token_times(client, url, body)
    first = times[1] - times[0] if len(times) > 1 else 0.0
    return len(times) - 1, first, time.perf_counter() - start


async def load(url, model, clients, per_client, max_tokens):
    async with httpx.AsyncClient(timeout=600) as client:
        failed = 0

        async def worker(k):
            nonlocal failed
            out = []
            for i in range(per_client):
                question = QUESTIONS[(k * per_client + i) % len(QUESTIONS)]
                try:
                    out.append(await one_request(client, url, model, question, max_tokens))
                except httpx.HTTPError:  # counted: a server that drops streams under load
                    failed += 1
            return out

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*map(worker, range(clients))) for r in rs]
        wall = time.perf_counter() - start
    if not results:
        return {"tokens_per_s": 0.0, "ttft_s": 0.0, "p50_s": 0.0, "p99_s": 0.0, "failed": failed}
    tokens = sum(r[0] for r in results)
    latencies = sorted(r[2] for r in results)
    return {
        "tokens_per_s": tokens / wall,
        "ttft_s": statistics.median(r[1] for r in results),
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "failed": failed,
    }


async def embed_load(url: str, clients: int, total: int) -> float:
    """Embedding requests per second with `clients` concurrent senders of one sentence each."""
    sentences = [f"{q} (request {i})" for i, q in enumerate(QUESTIONS * (total // 8 + 1))][:total]
    async with httpx.AsyncClient(timeout=600) as client:

        async def worker(k):
            for i in range(k, total, clients):
                body = {"model": "all-minilm-l6-v2", "input": sentences[i]}
                (await client.post(f"{url}/v1/embeddings", json=body)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*map(worker, range(clients)))
        return total / (time.perf_counter() - start)


def decode_ceiling(args: argparse.Namespace, steps: int = 32) -> dict[int, float]:
    """Tokens/s of the model alone, in this process, with n sequences decoding together."""
    if args.backend == "llama":
        options = {"n_threads": decode_threads(args.threads), "n_threads_batch": args.threads_batch,
                   "max_batch_size": max(args.concurrency), "workload": "batch"}  # fmt: skip
    else:
        options = {"dtype": args.dtype}
    lm = load_lm(args.model, backend=args.backend, **options)
    if args.backend == "llama" and args.threads is None:  # as lmlab serve picks them
        args.threads = pick_decode_threads(lm, args.threads_batch)
        print(f"one sequence decodes on {args.threads} threads (as lmlab serve measures)")
    prompt = lm.tokenizer.encode(QUESTIONS[0])
    rates = {}
    for n in sorted(set(args.concurrency)):
        states = [lm.new_state(1) for _ in range(n)]
        lm.forward_each(states, [prompt] * n)
        start = time.perf_counter()
        for _ in range(steps):
            lm.forward_each(states, [[prompt[-1]]] * n)
        rates[n] = n * steps / (time.perf_counter() - start)
        for state in states:
            lm.release(state)
        print(f"model alone, {n:>2} sequences: {rates[n]:6.1f} tokens/s", flush=True)
    return rates


def encode_ceiling(rounds: int = 10) -> float:
    """How much faster the encoder alone reads 16 sentences as one batch than one by one."""
    from lmlab import load_encoder

    encoder = load_encoder("all-minilm-l6-v2")
    sentences = [f"{q} (request {i})" for i, q in enumerate(QUESTIONS * 2)]
    encoder.encode(sentences)  # warm-up
    start = time.perf_counter()
    for _ in range(rounds):
        for sentence in sentences:
            encoder.encode([sentence])
    one = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(rounds):
        encoder.encode(sentences)
    return one / (time.perf_counter() - start)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def soak(
    url: str, model: str, pid: int, seconds: float, clients: int, max_tokens: int
) -> None:
    """Keep `clients` streams busy for `seconds`; print failures and memory every minute."""
    end = time.perf_counter() + seconds
    done = failed = 0
    async with httpx.AsyncClient(timeout=600) as client:

        async def worker(k):
            nonlocal done, failed
            i = k
            while time.perf_counter() < end:
                try:
                    await one_request(client, url, model, QUESTIONS[i % 8], max_tokens)
                    done += 1
                except Exception:
                    failed += 1
                i += clients

        async def monitor():
            start = time.perf_counter()
            while time.perf_counter() < end:
                elapsed = time.perf_counter() - start
                print(
                    f"soak {elapsed:5.0f}s: {done} done, {failed} failed, "
                    f"server RSS {rss_mb(pid):.0f} MB",
                    flush=True,
                )
                await asyncio.sleep(min(60.0, max(10.0, seconds / 8)))

        await asyncio.gather(monitor(), *map(worker, range(clients)))
    print(f"soak finished: {done} requests, {failed} failed, server RSS {rss_mb(pid):.0f} MB")


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (benchmarks/cpu_table.py reuses them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--embed-requests", type=int, default=320)
    parser.add_argument("--soak", type=float, default=0, help="seconds of 16-client load")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; medians are reported")
    parser.add_argument("--backend", choices=["llama", "torch"], default="llama")
    parser.add_argument("--threads", type=int, help="for one sequence (default: lmlab's)")
    parser.add_argument("--threads-batch", type=int, help="for batches (default: lmlab's)")
    parser.add_argument("--dtype", default="auto", help="torch backend weights")
    parser.add_argument("--gguf", help="serve this GGUF file (default: the bundled chat model)")
    parser.add_argument(
        "--peers", nargs="*", choices=PEERS, default=list(PEERS),
        help="llama-server: on lmlab's file; llama-server-other: on the bundled model's other "
        "weights (its file as shipped or its Q8_0 copy, whichever lmlab does not serve)",
    )  # fmt: skip
    parser.add_argument("--llama-server-parallel", type=int, default=8, help="its slots (-np)")
    return parser


def prepare(args: argparse.Namespace) -> None:
    """Fill in what the options leave open: the model, its id and both thread counts."""
    # every server gets lmlab serve's defaults: batches on all cores, one sequence as it measures
    args.threads_batch = batch_threads(args.threads, args.threads_batch)
    args.model = args.gguf or DEFAULT_LM
    args.name = Path(args.gguf).stem if args.gguf else DEFAULT_LM  # the id lmlab serves it under


def main() -> None:
    options = parser()
    args = options.parse_args()
    if args.repeats < 1:
        options.error("--repeats must be 1 or more")
    prepare(args)
    if args.soak:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "lmlab", "serve", "--chat-model", args.model]
        command += ["--embedding-model", "", "--port", str(port)]
        process = start(command, url)
        try:
            asyncio.run(soak(url, args.name, process.pid, args.soak, 16, args.max_tokens))
        finally:
            process.terminate()
            process.wait()
        return
    ceiling = decode_ceiling(args)  # sets args.threads as lmlab serve would
    runs, embeds = run_rounds(servers(args), args)
    summarize(runs, embeds, ceiling, args.repeats)


def servers(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each server's command line (without its port), lmlab first; a peer that cannot run
    here is left out with a one-line note."""
    ref = resolve(args.model)
    gguf = weight_files(ref)[0]  # the file lmlab serve's llama backend runs
    threads, threads_batch = str(decode_threads(args.threads)), str(args.threads_batch)
    lmlab_command = [sys.executable, "-m", "lmlab", "serve", "--parallel", "16"]
    lmlab_command += ["--chat-model", args.model, "--backend", args.backend]
    lmlab_command += ["--threads", threads, "--threads-batch", threads_batch, "--dtype", args.dtype]
    commands = {"lmlab": lmlab_command}
    if args.backend == "torch":  # the peers run llama.cpp: another backend
        return commands
    if {"llama-server", "llama-server-other"} & set(args.peers):
        binary, note = llama_server.binary()
        print(note, flush=True)
        files = dict(zip(("llama-server", "llama-server-other"), weight_files(ref), strict=False))
        for peer, path in files.items():
            if binary and peer in args.peers:
                name = f"llama-server {weights(path)}"
                print(f"{name} runs {Path(path).name}", flush=True)
                commands[name] = [
                    str(binary), "--model", path, "--alias", args.name, "--host", "127.0.0.1",
                    "--parallel", str(args.llama_server_parallel), "--cont-batching",
                    "--ctx-size", str(2048 * args.llama_server_parallel), "--no-webui",
                    "--threads", threads, "--threads-batch", threads_batch,
                ]  # fmt: skip
    if "llama-cpp-python" in args.peers:
        commands["llama-cpp-python"] = [
            sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--n_ctx", "8192",
            "--n_threads", threads, "--n_threads_batch", threads_batch, "--model_alias",
            args.name,
            "--interrupt_requests",  # by default a new request drops the running stream;
            "False",  # this way it queues them and every request completes
        ]  # fmt: skip
    return commands


def weight_files(ref: ModelRef) -> list[str]:
    """The GGUF file lmlab serve runs for `ref`; for a bundled model with a re-quantized copy,
    then the other of the two (the file as shipped, or its copy), where it exists."""
    served = llama_file(ref, "batch")
    bundled = BUNDLED.get(ref.name)
    if bundled is None or bundled.llama_type is None or ref.path != bundled_path(bundled):
        return [str(served)]
    other = copy_path(ref.path, bundled.llama_type) if served == ref.path else ref.path
    return [str(served)] + ([str(other)] if other.is_file() else [])


def weights(path: str) -> str:
    """A GGUF file's weight type as its name gives it (e.g. "Q8_0"), else its name."""
    return Path(path).stem.rsplit(".", 1)[-1]


def run_rounds(
    commands: dict[str, list[str]], args: argparse.Namespace
) -> tuple[dict[tuple[str, int], list[dict]], list[tuple[float, float]]]:
    """`args.repeats` rounds, each starting every server afresh and running every load on it:
    (server, clients) -> one row per round, and lmlab's embedding rates per round."""
    runs: dict[tuple[str, int], list[dict]] = {}
    embeds: list[tuple[float, float]] = []
    for _ in range(args.repeats):
        for name, command in commands.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = start([*command, "--port", str(port)], url)
            try:
                asyncio.run(load(url, args.name, 1, 1, 8))  # warm-up
                if name == "lmlab" and args.embed_requests:
                    embeds.append(measure_embeddings(url, args.embed_requests))
                for n in args.concurrency:
                    row = asyncio.run(
                        load(url, args.name, n, args.requests_per_client, args.max_tokens)
                    )
                    runs.setdefault((name, n), []).append(row)
                    print(
                        f"{name:>17}  clients {n:>2}: {row['tokens_per_s']:6.1f} tokens/s  "
                        f"TTFT {row['ttft_s']:.2f}s  p50 {row['p50_s']:.2f}s  "
                        f"p99 {row['p99_s']:.2f}s  failed {row['failed']}",
                        flush=True,
                    )
            finally:
                process.terminate()
                process.wait()
    return runs, embeds


def measure_embeddings(url: str, requests: int) -> tuple[float, float]:
    """Embedding requests per second one by one, then from 16 concurrent clients."""
    asyncio.run(embed_load(url, 4, 32))  # warm-up
    one = asyncio.run(embed_load(url, 1, requests))
    many = asyncio.run(embed_load(url, 16, requests))
    print(
        f"embeddings: one by one {one:.1f} req/s, 16 concurrent {many:.1f} req/s: "
        f"{many / one:.2f}x (goal >= 3x); the encoder alone, 16 sentences in one "
        f"batch vs one by one: {encode_ceiling():.2f}x",
        flush=True,
    )
    return one, many


def medians(runs: dict[tuple[str, int], list[dict]]) -> dict[tuple[str, int], dict]:
    """Each figure's median over the rounds: (server, clients) -> one row."""
    return {
        key: {field: statistics.median(r[field] for r in rows) for field in rows[0]}
        for key, rows in runs.items()
    }


def summarize(runs: dict, embeds: list, ceiling: dict[int, float], repeats: int) -> None:
    """The goal ratios, of medians over the rounds when there were several."""
    rows = medians(runs)
    rate = {key: row["tokens_per_s"] for key, row in rows.items()}
    if repeats > 1:
        print(f"\nmedians of {repeats} rounds:")
        for (name, n), row in rows.items():
            print(f"{name:>17}  clients {n:>2}: {row['tokens_per_s']:6.1f} tokens/s  "
                  f"TTFT {row['ttft_s']:.2f}s")  # fmt: skip
        if embeds:
            one, many = (statistics.median(e[i] for e in embeds) for i in (0, 1))
            print(f"embeddings: one by one {one:.1f}, 16 concurrent {many:.1f} req/s: "
                  f"{many / one:.2f}x (goal >= 3x)")  # fmt: skip
    if ("lmlab", 8) in rate and ("lmlab", 1) in rate:
        scale = rate["lmlab", 8] / rate["lmlab", 1]
        print(f"\nlmlab 8 clients / 1 client: {scale:.2f}x (goal >= 3x)")
    if 1 in ceiling and 8 in ceiling:
        print(f"the model alone, 8 sequences / 1: {ceiling[8] / ceiling[1]:.2f}x (the bound)")
    for n in sorted({n for _, n in rows}):
        if n in ceiling and ("lmlab", n) in rate:
            print(f"lmlab at {n} clients: {rate['lmlab', n] / ceiling[n]:.0%} of the model alone "
                  f"with {n} sequences")  # fmt: skip
    for (peer, n), row in rows.items():
        if peer != "lmlab" and ("lmlab", n) in rows:
            ours = rows["lmlab", n]
            goal = " (goal >= 2x)" if peer == "llama-cpp-python" and n == 8 else ""
            print(f"lmlab / {peer} at {n} clients: {ours['tokens_per_s'] / rate[peer, n]:.2f}x "
                  f"tokens/s{goal}; first token {ours['ttft_s']:.2f} s against "
                  f"{row['ttft_s']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
