"""Commands over language models: models, tokenize, generate, chat, score."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import (
    AllOpt,
    BackendChoice,
    BackendOpt,
    DraftModelOpt,
    JsonOpt,
    MaxTokensOpt,
    MinPOpt,
    ModelOpt,
    NumDraftOpt,
    RepPenaltyOpt,
    SamplingDefaultsChoice,
    SamplingDefaultsOpt,
    SeedOpt,
    SpeculativeOpt,
    StopOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    app,
    emit_json,
    load,
    table_rows,
)
from lmlab.cli.ray_options import (
    CpusPerWorkerOpt,
    RayAddressOpt,
    RayOpt,
    WorkersOpt,
    check_local_input,
    check_ray_options,
    run_on_ray,
)
from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_LM


def checked_options(**options) -> dict:
    """Sampling options, checked before the (slow) model load so a typo fails at once."""
    from lmlab.sampling import SamplingParams

    SamplingParams.from_options(options)
    return options


def _speculation(speculative, draft_model: str | None, num_draft: int | None) -> dict:
    """The speculative-decoding keywords of generate and chat (none when not asked for)."""
    if speculative is None and draft_model is None and num_draft is None:
        return {}
    method = speculative.value if speculative is not None else None
    return {"speculative": method, "draft_model": draft_model, "num_draft": num_draft}


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the models lmlab can load by name, and where they are."""
    from dataclasses import asdict

    from rich.console import Console

    from lmlab.cli.tables import new_table, print_table
    from lmlab.models import available_models

    rows = available_models()
    if as_json:
        emit_json([asdict(m) for m in rows])
        return
    table = new_table("name", "task", "model", "runs as (measured on this CPU)", "installed at")
    for m in rows:
        where = m.path or f"[red]not installed[/red]: {m.install}"
        table.add_row(m.name, m.task, m.about, _runs_as(m.choices), where)
    console = Console()
    print_table(table, console, key=0)  # the names, kept whole where the terminal allows
    note = "Any .gguf file or Hugging Face model folder can be passed as --model too."
    # piped, the table is data and the note goes to stderr
    (console if console.is_terminal else Console(stderr=True)).print(note)


def _runs_as(choices: dict[str, dict]) -> str:
    """The measured choices of one model in a few words ("not measured yet" before first use)."""
    parts = []
    if weights := choices.get("llama weights"):
        parts.append(f"one sequence: {weights['single']}, a batch: {weights['batch']} weights")
    if encoder := choices.get("encoder"):
        parts.append(encoder["backend"])
    if fast := choices.get("fast encoder"):
        parts.append(f"--fast: {fast['path']}")
    if any((c or {}).get("busy") for c in choices.values()):
        parts.append("measured while the machine was busy: again when quiet")
    return "; ".join(parts) or "not measured yet"


@app.command()
def tokenize(
    text: Annotated[str, typer.Argument(help="The text to split into tokens.")] = "",
    model: ModelOpt = DEFAULT_LM,
    backend: BackendOpt = BackendChoice.auto,
    special: Annotated[
        bool, typer.Option(help="Add the model's sequence tokens (BOS, [CLS]).")
    ] = False,
    vocab: Annotated[
        bool, typer.Option("--vocab", help="Summarise the vocabulary instead.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the tokens and ids of TEXT (or, with --vocab, what the vocabulary holds)."""
    from dataclasses import asdict

    from lmlab.models import load_tokenizer

    tok = load_tokenizer(model, backend=backend.value)
    if vocab:
        summary = tok.summary()
        if as_json:
            emit_json(asdict(summary))
        else:
            print(f"vocabulary size: {summary.size}")
            print(f"whole words:     {summary.words}")
            print(f"word pieces:     {summary.pieces}")
            print(f"special tokens:  {summary.special}")
        return
    if not text:
        raise LmlabError("give a TEXT to tokenize (or --vocab)")
    ids = tok.encode(text, add_special_tokens=special)
    tokens = [tok.id_to_token(i) for i in ids]
    if as_json:
        emit_json({"tokens": tokens, "ids": ids})
    else:
        print(tokens)
        print(ids)


@app.command()
def generate(
    prompt: Annotated[
        str | None, typer.Argument(help="The text to continue (or give --file).")
    ] = None,
    model: ModelOpt = DEFAULT_LM,
    backend: BackendOpt = BackendChoice.auto,
    max_tokens: MaxTokensOpt = 128,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    min_p: MinPOpt = None,
    repetition_penalty: RepPenaltyOpt = None,
    sampling_defaults: SamplingDefaultsOpt = SamplingDefaultsChoice.model,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Number of samples.")] = 1,
    logprobs: Annotated[
        int, typer.Option(help="Show this many top alternatives per token (JSON).")
    ] = 0,
    stream: Annotated[bool, typer.Option(help="Print tokens as they come.")] = True,
    speculative: SpeculativeOpt = None,
    draft_model: DraftModelOpt = None,
    num_draft: NumDraftOpt = None,
    best_of: Annotated[
        int | None, typer.Option("--best-of", help="Sample N; print the best by --reward.")
    ] = None,
    reward: Annotated[
        str | None, typer.Option(help="A reward model run (lmlab train reward) for --best-of.")
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            help="Continue every prompt of this file (JSONL, CSV, Parquet or txt; "
            "--ray: also a folder or URL) into --out.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="With --file: answers.jsonl, .csv or .parquet (--ray: a folder)."
        ),
    ] = None,
    column: Annotated[
        str, typer.Option("--column", "-c", help="With --file: the prompts' column.")
    ] = "prompt",
    ray: RayOpt = False,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1,
    ray_address: RayAddressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue PROMPT with a language model (or every prompt of --file into --out)."""
    from lmlab.decode import generate as run
    from lmlab.decode import generate_stream

    if (prompt is None) == (file is None):
        raise LmlabError("give a PROMPT or --file prompts.jsonl (one of them)")
    if file is not None and out is None:
        raise LmlabError("--file needs --out, where the answers go", param="out")
    if file is None and (out is not None or ray):
        raise LmlabError("--out and --ray go with --file", param="file")
    check_ray_options(ray, out, ray_address, workers)
    speculation = _speculation(speculative, draft_model, num_draft)
    if speculation and (file is not None or best_of is not None or reward is not None):
        raise LmlabError(
            "--speculative and --draft-model go with a PROMPT (not --file or --best-of)"
        )
    options = checked_options(
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        stop=stop or [],
        n=n,
        logprobs=logprobs > 0,
        top_logprobs=logprobs,
    )
    if file is not None:
        if n != 1 or logprobs:
            raise LmlabError("--file writes one answer per prompt: no --n or --logprobs")
        for key in ("n", "logprobs", "top_logprobs"):
            options.pop(key)
        batch = _generate_file if not ray else _generate_ray
        batch(
            file,
            out,
            column,
            model,
            backend,
            sampling_defaults.value,
            options,
            as_json,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            address=ray_address,
        )
        return
    lm = load(model, backend)
    options["sampling_defaults"] = sampling_defaults.value
    if best_of is not None or reward is not None:
        from lmlab.cli.posttrain_commands import print_best_of

        return print_best_of(lm, prompt, best_of, reward, options, as_json)
    options.update(speculation, backend=backend.value)
    if stream and n == 1 and not as_json:
        said = False
        for chunk in generate_stream(lm, prompt, **options):
            print(chunk.text, end="", flush=True)
            said = said or bool(chunk.text.strip())
        print()
        if not said:
            _explain_empty(lm, prompt)
        return
    result = run(lm, prompt, **options)
    if as_json:
        emit_json({"prompt": prompt, **result.to_dict()})
        return
    for choice in result.choices:
        if n > 1:
            print(f"--- sample {choice.index + 1} ({choice.finish_reason}) ---")
        print(choice.text)
    if not any(choice.text.strip() for choice in result.choices):
        _explain_empty(lm, prompt)


def _explain_empty(lm, prompt: str) -> None:
    """Say on stderr why the answer is empty: a chat model given a bare question ends its
    continuation at once (the question reads as a finished user turn)."""
    from rich.console import Console

    chat_model = getattr(getattr(lm, "tokenizer", None), "chat_template", None) or getattr(
        lm, "chat_template", None
    )
    if chat_model:
        quoted = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        why = (
            f"{lm.name} is a chat model: generate continues text as it is, and this one "
            f'ended at once. To ask it something: lmlab chat "{quoted}"'
        )
    else:
        why = "the model ended the text at once; try a longer prompt or --temperature 0.8"
    Console(stderr=True).print(f"note: {why}", style="dim", highlight=False, soft_wrap=True)


@app.command()
def chat(
    message: Annotated[
        str | None, typer.Argument(help="One message; omit for a conversation.")
    ] = None,
    model: ModelOpt = DEFAULT_LM,
    backend: BackendOpt = BackendChoice.auto,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_tokens: MaxTokensOpt = 512,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    min_p: MinPOpt = None,
    repetition_penalty: RepPenaltyOpt = None,
    sampling_defaults: SamplingDefaultsOpt = SamplingDefaultsChoice.model,
    seed: SeedOpt = None,
    speculative: SpeculativeOpt = None,
    draft_model: DraftModelOpt = None,
    num_draft: NumDraftOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Talk to a chat model: one answer to MESSAGE, or a conversation (/reset, /exit)."""
    from lmlab.decode import chat as run
    from lmlab.decode import chat_stream

    options = checked_options(
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    lm = load(model, backend)
    options["sampling_defaults"] = sampling_defaults.value
    speculation = _speculation(speculative, draft_model, num_draft)
    if draft_model is not None:  # loaded once for every turn
        speculation["draft_model"] = load(draft_model, backend)
    if speculation:  # bad speculation options fail before the first turn
        from lmlab.speculative import Speculation

        Speculation.create(lm, **speculation)
    options.update(speculation, backend=backend.value)
    history = [{"role": "system", "content": system}] if system else []

    def answer(text: str) -> str:
        messages = [*history, {"role": "user", "content": text}]
        if as_json:
            result = run(lm, messages, **options)
            emit_json({"messages": messages, **result.to_dict()})
            return result.text
        pieces = []
        for chunk in chat_stream(lm, messages, **options):
            print(chunk.text, end="", flush=True)
            pieces.append(chunk.text)
        print()
        return "".join(pieces)

    if message is not None:
        answer(message)
        return
    print(f"Chatting with {lm.name}. /reset clears the conversation, /exit (or Ctrl-D) quits.")
    while True:
        try:
            text = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            history = history[:1] if system else []
            print("(conversation cleared)")
            continue
        if not text:
            continue
        reply = answer(text)
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]


@app.command()
def score(
    text_or_file: Annotated[str, typer.Argument(help="A text, or the path of a text file.")],
    model: ModelOpt = DEFAULT_LM,
    backend: BackendOpt = BackendChoice.auto,
    per_token: Annotated[
        bool, typer.Option("--per-token", help="Show each token's surprisal.")
    ] = False,
    window: Annotated[int, typer.Option(help="Tokens per scoring window.")] = 1024,
    stride: Annotated[int, typer.Option(help="Tokens the window advances by.")] = 512,
    as_text: Annotated[
        bool, typer.Option("--text", help="Score TEXT_OR_FILE as text, even if it names a file.")
    ] = False,
    per_line: Annotated[
        bool,
        typer.Option(
            "--per-line",
            help="Score each line (each row of a table) of FILE as its own document.",
        ),
    ] = False,
    column: Annotated[
        str, typer.Option("--column", "-c", help="With --per-line: a table's text column.")
    ] = "text",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="With --per-line: scores.csv, .jsonl or .parquet (--ray: a folder)."
        ),
    ] = None,
    ray: RayOpt = False,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1,
    ray_address: RayAddressOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Log-probability, surprisal and perplexity of a text under a language model."""
    from lmlab.evaluate import names_a_file
    from lmlab.evaluate import score as score_text

    if window < 2 or not 1 <= stride <= window:
        raise LmlabError("need --window >= 2 and 1 <= --stride <= --window")
    if (out is not None or ray) and not per_line:
        raise LmlabError("--out and --ray go with --per-line", param="per_line")
    check_ray_options(ray, out, ray_address, workers)
    if per_line:
        if ray:
            _score_ray(
                text_or_file,
                out,
                column,
                model,
                backend,
                window,
                stride,
                as_json,
                workers=workers,
                cpus_per_worker=cpus_per_worker,
                address=ray_address,
            )
        else:
            _score_lines(
                text_or_file, out, column, model, backend, window, stride, as_json, show_all
            )
        return
    is_file = not as_text and names_a_file(text_or_file)
    if not as_text and not is_file and _looks_like_a_path(text_or_file):
        raise LmlabError(f"no file {text_or_file!r} (to score it as text, add --text)")
    lm = load(model, backend)
    text = Path(text_or_file) if is_file else text_or_file
    result = score_text(lm, text, window=window, stride=stride)
    if as_json:
        emit_json(result.to_dict(per_token=per_token))
        return
    if per_token:
        from lmlab.cli.tables import new_table, print_table

        table = new_table("token", "id", "logprob (nats)", "surprisal (bits)")
        per_token = list(zip(result.tokens, result.token_ids, result.logprobs, strict=True))
        rows, note = table_rows(per_token, show_all)
        for row in rows:
            if row is None:
                table.add_row("…", "", "", "")
                continue
            t, i, lp = row
            table.add_row(repr(t), str(i), f"{lp:.3f}", f"{-lp / 0.6931471805599453:.2f}")
        print_table(table)
        if note:
            print(note)
    print(
        f"tokens scored: {result.n_tokens}  total logprob: {result.total_logprob:.3f} nats  "
        f"bits/token: {result.bits_per_token:.3f}  perplexity: {result.perplexity:.3f}"
    )


def _looks_like_a_path(text: str) -> bool:
    """One word with a folder separator or a file extension (`ptb.txt`, `data/x`)."""
    return not any(c.isspace() for c in text) and bool(
        "/" in text or re.search(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", text)
    )


def _score_lines(file, out, column, model, backend, window, stride, as_json, show_all) -> None:
    """`lmlab score FILE --per-line` on this process: a table of scores, printed or to --out."""
    from lmlab.cli.classify_commands import _write_rows
    from lmlab.embed.batch import read_texts
    from lmlab.lm_rows import SCORE_COLUMNS, score_texts

    rows = read_texts(file, column)
    scores = score_texts(load(model, backend), [r[1] for r in rows], window=window, stride=stride)
    columns = ["id", *SCORE_COLUMNS]
    table = [
        [r[0], *vals] for r, vals in zip(rows, zip(*scores.values(), strict=True), strict=True)
    ]
    if out is not None:
        _write_rows(columns, table, out)
        if as_json:
            emit_json({"out": str(out), "count": len(table)})
        else:
            print(f"wrote {len(table)} scores to {out}")
        return
    if as_json:
        emit_json([dict(zip(columns, row, strict=True)) for row in table])
        return
    shown, note = table_rows(table, show_all)
    print(f"{'id':>8}  {'tokens':>6}  {'perplexity':>10}")
    for row in shown:
        print(f"{'…':>8}" if row is None else f"{row[0]:>8}  {row[1]:>6}  {row[3]:>10.3f}")
    if note:
        print(note)


def _score_ray(file, out, column, model, backend, window, stride, as_json, **ray_options):
    import lmlab.ray

    address = ray_options.pop("address")

    def build():
        return lmlab.ray.score(
            file,
            model=model,
            backend=backend.value,
            column=column,
            window=window,
            stride=stride,
            **ray_options,
        )

    check_local_input(file, column)
    count = run_on_ray(build, out, address)
    _say_written(count, "scores", out, as_json)


def _generate_file(file, out, column, model, backend, defaults, options, as_json, **_) -> None:
    """`lmlab generate --file` on this process: one answer per prompt, written to --out."""
    from lmlab.cli.classify_commands import _write_rows
    from lmlab.embed.batch import read_texts
    from lmlab.lm_rows import GENERATE_COLUMNS, generate_texts

    if out.suffix.lower() not in (".jsonl", ".csv", ".tsv", ".parquet"):
        raise LmlabError("--out must end in .jsonl, .csv, .tsv or .parquet", param="out")
    rows = read_texts(Path(file), column)
    lm = load(model, backend)
    answers = generate_texts(lm, [r[1] for r in rows], sampling_defaults=defaults, **options)
    table = [
        [r[0], r[1], *vals]
        for r, vals in zip(rows, zip(*answers.values(), strict=True), strict=True)
    ]
    _write_rows(["id", column, *GENERATE_COLUMNS], table, out)
    _say_written(len(table), "answers", out, as_json)


def _generate_ray(file, out, column, model, backend, defaults, options, as_json, **ray_options):
    import lmlab.ray

    address = ray_options.pop("address")

    def build():
        return lmlab.ray.generate(
            file,
            model=model,
            backend=backend.value,
            column=column,
            sampling_defaults=defaults,
            **ray_options,
            **options,
        )

    check_local_input(file, column)
    count = run_on_ray(build, out, address)
    _say_written(count, "answers", out, as_json)


def _say_written(count: int, what: str, out: Path, as_json: bool) -> None:
    if as_json:
        emit_json({"out": str(out), "count": count})
    else:
        print(f"wrote {count} {what} to {out}")
