"""`train()`: a language model of ours (mlp, rnn, lstm, gru, gpt, bert, ngram) on text files.

The tokenizer and run directory are made here, the model built, its objective chosen (causal,
or masked with NSP for bert), and the loop (loop.py) does the training.

Distributed: under `torchrun --nproc_per_node N -m lmlab train ...` every process trains on its
own shard of the text with DistributedDataParallel (gloo on CPU, nccl on GPU), averaging
gradients, so one step sees N x batch_size windows; process 0 writes the run directory.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import distributed as dist

from lmlab.errors import LmlabError
from lmlab.home import atomic_write_text
from lmlab.lm.neural.run import build_model, load_weights, make_config, write_run_files
from lmlab.lm.neural.scoring import encode_corpus
from lmlab.training import lm_setup as setup
from lmlab.training.checkpoint import CHECKPOINT, ModelWeights
from lmlab.training.devices import device_for_rank, pick_device, pick_dtype, start_distributed
from lmlab.training.loop import Loop
from lmlab.training.objectives.causal import Batches, CausalLM
from lmlab.training.optim import optimizer_for
from lmlab.training.progress import progress_callback
from lmlab.training.results import TrainConfig, TrainResult


def train(
    kind: str,
    corpus: Sequence[str | Path],
    out: str | Path,
    *,
    tokenizer: str | Path | None = None,
    vocab_size: int | None = None,
    valid: str | Path | None = None,
    valid_fraction: float | None = None,
    preset: str | None = None,
    model_options: dict | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    freeze: int = 0,
    progress: bool | Callable[[dict], None] = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a language model of `kind` on text files; write a run directory in `out`.

    Args:
        kind: mlp, rnn, lstm, gru, gpt or bert; or ngram, as `lmlab train ngram`: counted in
            one pass, so only tokenizer (split lines with that model's tokenizer), valid,
            model_options (NgramConfig's order, smoothing, k, min_count, max_vocab,
            lowercase; and gzip, to write model.arpa.gz) and progress (True or False) apply.
        corpus: UTF-8 text files.
        out: the run directory (model.safetensors, config.json, tokenizer.json, lmlab.json,
            checkpoint/, metrics.jsonl, loss.png). A run that fails before its first
            checkpoint removes what it created there.
        tokenizer: a folder with tokenizer.json, or a kind to train on the corpus: char, word,
            bpe, byte-bpe, wordpiece (default: char; wordpiece for bert, which needs [MASK]).
        vocab_size: for a tokenizer trained here (default 8000; all words or characters for
            word and char).
        valid: a validation text file; or `valid_fraction`, the last fraction of the corpus.
        preset: a named model size (e.g. "tiny"); `model_options` override its fields.
        config: optimisation settings (TrainConfig).
        resume: continue the run in `out` from its checkpoint, exactly.
        init_from: fine-tune: start from the weights, shape and tokenizer of this run directory
            (of the same kind); only dropout may change, and tokenizer, vocab_size and preset
            must not be given (the source run fixes them).
        freeze: keep the embeddings and the first `freeze` blocks fixed (gpt, bert).
        progress: show a progress bar (True), none (False), or a callback that receives the
            loop's progress events (see training.loop.Loop).
        on_step: called with the step number after every optimizer step.

    Returns:
        A TrainResult (final train and validation loss, tokens per second, ...).

    Example:
        >>> train("gpt", ["input.txt"], "runs/shakespeare", preset="shakespeare-cpu",
        ...       valid_fraction=0.1, config=TrainConfig(steps=2000))
    """
    if kind == "ngram":
        given = dict(vocab_size=vocab_size, valid_fraction=valid_fraction, preset=preset,
                     config=config, resume=resume or None, init_from=init_from,
                     freeze=freeze or None, on_step=on_step)  # fmt: skip
        if wrong := [name for name, value in given.items() if value is not None]:
            raise LmlabError(f"an ngram model is counted, not trained by steps: "
                             f"{', '.join(wrong)} does not apply")  # fmt: skip
        return _train_ngram(corpus, out, tokenizer=tokenizer, valid=valid,
                            model_options=model_options, progress=progress)  # fmt: skip
    config = config or TrainConfig()
    # Building any torch optimizer imports torch._dynamo (2-3 s); do it while the text is read.
    threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True).start()
    out = Path(out)
    rank, world = start_distributed()
    created = setup.CreatedFiles(out)
    try:
        loop = _setup(kind, corpus, out, tokenizer=tokenizer, vocab_size=vocab_size, valid=valid,
                      valid_fraction=valid_fraction, preset=preset, model_options=model_options,
                      config=config, resume=resume, init_from=init_from, freeze=freeze,
                      progress=progress, on_step=on_step, rank=rank, world=world)  # fmt: skip
        result = loop.run()
    except BaseException:
        # A run that failed before its first checkpoint leaves nothing to resume: remove what
        # it created (after one, Ctrl-C and --resume, or a failed step, keep it).
        if rank == 0 and not resume and not (out / CHECKPOINT).exists():
            created.remove()
        raise
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return result


def _train_ngram(corpus, out, *, tokenizer, valid, model_options, progress) -> TrainResult:
    """Count, smooth and save an n-gram model; its losses are SRILM-style cross-entropies (nats
    per scored word) of the training files and of `valid`."""
    import time

    from lmlab.lm.ngram.model import NgramConfig, NgramLM

    if callable(progress):
        raise LmlabError("an ngram model has no steps to report: progress must be True or False")
    options = dict(model_options or {})
    gzip = bool(options.pop("gzip", False))
    allowed = set(NgramConfig.__dataclass_fields__) - {"tokenizer"}  # that one is an argument
    if unknown := set(options) - allowed:
        raise LmlabError(f"an ngram model has no option {', '.join(sorted(unknown))}")
    paths = [corpus] if isinstance(corpus, str | Path) else list(corpus)
    start = time.perf_counter()
    lm = NgramLM.train(paths, progress=bool(progress), tokenizer=tokenizer, **options)
    lm.save(out, gzip=gzip)
    counted = time.perf_counter() - start
    train = [lm.evaluate_file(path) for path in paths]
    tokens = max(1, sum(e.tokens for e in train))
    valid_eval = lm.evaluate_file(valid) if valid is not None else None
    return TrainResult(
        out=str(out),
        steps=0,
        train_loss=sum(e.loss * e.tokens for e in train) / tokens,
        valid_loss=valid_eval.loss if valid_eval else None,
        valid_perplexity=valid_eval.perplexity if valid_eval else None,
        tokens_per_second=lm.info["words"] / counted if counted > 0 else 0.0,
        seconds=time.perf_counter() - start,
    )


def _setup(
    kind,
    corpus,
    out: Path,
    *,
    tokenizer,
    vocab_size,
    valid,
    valid_fraction,
    preset,
    model_options,
    config: TrainConfig,
    resume,
    init_from,
    freeze,
    progress,
    on_step,
    rank: int,
    world: int,
) -> Loop:
    """The run directory, tokenizer, model, objective and optimizer: the loop, ready to run."""
    if init_from is not None:
        setup.check_fine_tune_options(init_from, tokenizer=tokenizer, vocab_size=vocab_size,
                                      preset=preset)  # fmt: skip
        tokenizer = init_from  # what the run really uses, and records
    tokenizer = tokenizer or ("wordpiece" if kind == "bert" else "char")
    device = device_for_rank(pick_device(config.device), rank, world)
    config = replace(config, dtype=pick_dtype(config.dtype, device))  # the run records which
    setup.check_config(config, valid, valid_fraction)
    train_options = {k: v for k, v in asdict(config).items() if k != "log_every"}
    train_options.update(tokenizer=str(tokenizer), vocab_size=vocab_size, valid=str(valid or ""))
    train_options.update(valid_fraction=valid_fraction, corpus=[str(p) for p in corpus])
    train_options.update(init_from=str(init_from or ""), freeze=freeze)
    if init_from is not None:
        model_options = setup.fine_tune_setup(Path(init_from), kind, model_options)
    if resume:
        tok, model_config = setup.resume_setup(out, kind, train_options, preset, model_options)
    else:
        if (out / CHECKPOINT).exists():
            raise LmlabError(f"{out} already holds a training run: pass --resume or another --out")
        # a bad shape is an error before anything is written (the vocabulary size is a stand-in)
        make_config(kind, preset, **{**(model_options or {}), "vocab_size": 1})
        model_config = None
        if rank == 0:  # the others read the tokenizer process 0 wrote
            setup.prepare_tokenizer(tokenizer, corpus, out, vocab_size)
        if world > 1:
            dist.barrier()
        from lmlab.text.hf_tokenizer import HFTokenizer

        tok = HFTokenizer(out)
    texts, valid_text = setup.split_corpus(corpus, valid, valid_fraction)
    if valid_text is not None and not resume and rank == 0:
        atomic_write_text(out / "valid.txt", valid_text)
    if model_config is None:
        model_config = make_config(
            kind, preset, **{**(model_options or {}), "vocab_size": tok.vocab_size}
        )
    torch.manual_seed(config.seed)
    model = build_model(kind, model_config).to(device)
    if init_from is not None and not resume:
        load_weights(model, Path(init_from) / "model.safetensors")
    if freeze:
        setup.freeze_blocks(model, freeze)
    train_ids = encode_corpus(tok, texts)
    valid_ids = encode_corpus(tok, [valid_text]) if valid_text is not None else None
    context = model.sequence_length
    if valid_ids is not None and len(valid_ids) < context + 1:
        raise LmlabError(
            f"the validation text has {len(valid_ids)} tokens, fewer than one window of "
            f"{context + 1}: hold out more (--valid-fraction) or lower --context"
        )
    shard = train_ids[rank * len(train_ids) // world : (rank + 1) * len(train_ids) // world]
    batches = Batches(shard, config.batch_size, context, model.carries_state, config.seed + rank)
    tokens_per_step = config.batch_size * context * config.accumulate
    total = config.steps or (
        math.ceil(config.epochs * len(train_ids) / tokens_per_step) if config.epochs else 1000
    )
    optimizer = optimizer_for(model, config)
    if not resume and rank == 0:
        write_run_files(out, kind, model_config, {**train_options, "processes": world})
        (out / "metrics.jsonl").unlink(missing_ok=True)
    eval_windows = config.eval_batches * config.batch_size
    if getattr(model, "objective", "causal") == "masked":
        from lmlab.training.objectives.masked import MaskedLM, masker, pairer

        objective = MaskedLM(batches, valid_ids, device, corrupt=masker(tok, model_config),
                             pairs=pairer(tok) if model_config.nsp else None,
                             eval_windows=eval_windows)  # fmt: skip
    else:
        objective = CausalLM(model, batches, valid_ids, device, eval_windows=eval_windows)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    return Loop(model, objective, optimizer, config, total=total, out=out, device=device,
                weights=ModelWeights(model), net=net, rank=rank, world=world, resume=resume,
                progress=progress_callback(progress), on_step=on_step)  # fmt: skip
