"""English -> Spanish: the RNN without attention, the RNN with Bahdanau attention and the
Transformer, each trained for the same minutes, beside Hugging Face's MarianMTModel.

The lecture's bottleneck argument, measured: an RNN that squeezes the source into its last
state should fall behind one with attention as sources grow longer. Every model is trained by
`train_seq2seq` (the one loop) with a time budget of `--minutes` on the en-es training pairs,
one joint byte-level BPE of 8,000 (trained once, shared by all), batches of 64 pairs of similar
length, then translates the first `--test` test pairs greedily (batched). Reported: test BLEU
and chrF (sacrebleu), BLEU by source length (1-10, 11-20, 21-40 words), training minutes,
steps and target tokens/s.

The peer: `MarianMTModel` from scratch with the Transformer's dimensions (3 + 3 layers, d 256,
4 heads, FFN 1024), decoded by `generate` (greedy), trained for the same minutes on the same
token ids either by a plain PyTorch loop on the very same batches (`marian`: AdamW 7e-4, 400
warm-up steps, bfloat16 autocast as ours) or by the `Seq2SeqTrainer` users would reach for
(`marian-trainer`: the same optimizer settings, its length-grouped batches of 64, bf16).

Every model also translates the test pairs by beam search (`--beam`, batched; Marian by
`generate(num_beams=...)` with its default length penalty): its BLEU beside greedy's and the
seconds it takes.

Usage: python benchmarks/translate.py [--minutes 1] [--test 200] [--threads N] [--out DIR]
       [--models transformer,rnn,rnn-bahdanau,marian,marian-trainer] [--beam 4]
       [--tokenizer RUN]
Writes DIR/translate.md (the table) and DIR/bleu_by_length.png (one line per model).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "en-es"
BUCKETS = ((1, 10), (11, 20), (21, 40))
MODELS = {  # --models key -> (table name, train_seq2seq arguments)
    "transformer": ("transformer", dict(arch="transformer", preset="base-cpu")),
    "rnn": ("rnn (no attention)", dict(arch="rnn", model_options={"attention": "none"})),
    "rnn-bahdanau": ("rnn + bahdanau", dict(arch="rnn", model_options={"attention": "bahdanau"})),
}
PEERS = {
    "marian": "HF MarianMTModel (plain loop)",
    "marian-trainer": "HF MarianMTModel (Seq2SeqTrainer)",
}


def scores(hyps: list[str], refs: list[str], sources: list[str]) -> dict:
    """BLEU and chrF of the whole set, and BLEU by source length in words."""
    import sacrebleu

    result = {
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
    }
    for lo, hi in BUCKETS:
        rows = [i for i, s in enumerate(sources) if lo <= len(s.split()) <= hi]
        bleu = sacrebleu.corpus_bleu([hyps[i] for i in rows], [[refs[i] for i in rows]]).score
        result[f"bleu {lo}-{hi}"] = bleu if rows else float("nan")
        result[f"n {lo}-{hi}"] = len(rows)
    return result


def train_ours(key: str, args, out: Path, tokenizer: str) -> tuple[dict, Path]:
    from lmlab.training import TrainConfig
    from lmlab.training.seq2seq import train_seq2seq

    config = TrainConfig(steps=100_000, batch_size=64, lr=7e-4, warmup=400, eval_every=10**9,
                         seed=0, device="cpu")  # fmt: skip
    run = out / key
    result = train_seq2seq(args.data / "train.tsv", run, source_col="en", target_col="es",
                           tokenizer=tokenizer, vocab_size=8000, minutes=args.minutes,
                           config=config, progress=False, **MODELS[key][1])  # fmt: skip
    return {"minutes": result.seconds / 60, "steps": result.steps,
            "tokens/s": result.tokens_per_second}, run  # fmt: skip


def marian_data(args, run: Path) -> tuple[list[list[int]], list[list[int]], int, int]:
    """The training pairs' token ids by the run's tokenizer (cut to the model's 256 positions),
    the end token's id and the vocabulary size."""
    from lmlab.seq2seq.data import read_pairs
    from lmlab.text.hf_tokenizer import HFTokenizer
    from lmlab.training.seq2seq import end_id

    tok = HFTokenizer(run)
    pairs = read_pairs(args.data / "train.tsv", "en", "es")
    cut = lambda rows: [r[:255] for r in rows]  # noqa: E731
    sources, targets = cut(tok.encode_batch(pairs.sources)), cut(tok.encode_batch(pairs.targets))
    return sources, targets, end_id(tok), tok.vocab_size


def new_marian(vocab_size: int, end: int):
    """MarianMTModel from scratch with the Transformer's dimensions (seed 0)."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(vocab_size=vocab_size, d_model=256, encoder_layers=3,
                          decoder_layers=3, encoder_attention_heads=4,
                          decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                          max_position_embeddings=256, pad_token_id=end, eos_token_id=end,
                          decoder_start_token_id=end, forced_eos_token_id=end,
                          scale_embedding=True, share_encoder_decoder_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    return MarianMTModel(config)


def train_marian(args, run: Path) -> tuple[dict, object]:
    """MarianMTModel with the Transformer's dimensions, a plain loop on our batches."""
    from lmlab.training.objectives.seq2seq import IGNORE, PairBatches

    sources, targets, end, vocab_size = marian_data(args, run)
    batches = PairBatches(sources, targets, 64, end, 0)
    model = new_marian(vocab_size, end)
    optimizer = torch.optim.AdamW(model.parameters(), lr=7e-4, betas=(0.9, 0.99))
    warmup, steps, tokens = 400, 0, 0
    start = time.perf_counter()
    model.train()
    while time.perf_counter() - start < args.minutes * 60:
        src, keep, tgt_in, labels = batches.next()
        for group in optimizer.param_groups:
            group["lr"] = 7e-4 * min(1.0, (steps + 1) / warmup)
        with torch.autocast("cpu", torch.bfloat16):
            loss = model(input_ids=src, attention_mask=keep, decoder_input_ids=tgt_in,
                         labels=labels).loss  # fmt: skip
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
        tokens += int((labels != IGNORE).sum())
    seconds = time.perf_counter() - start
    return {"minutes": seconds / 60, "steps": steps, "tokens/s": tokens / seconds}, model.eval()


def train_marian_trainer(args, run: Path) -> tuple[dict, object]:
    """MarianMTModel with the Transformer's dimensions, trained by Seq2SeqTrainer for the
    minutes (stopped by a callback), on length-grouped batches of 64."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    sources, targets, end, vocab_size = marian_data(args, run)
    model = new_marian(vocab_size, end)
    rows = [{"input_ids": [*s, end], "attention_mask": [1] * (len(s) + 1), "labels": [*t, end]}
            for s, t in zip(sources, targets, strict=True)]  # fmt: skip
    counted = {"tokens": 0, "start": 0.0, "seconds": 0.0}

    def collate(features: list[dict]) -> dict:
        """Padded as DataCollatorForSeq2Seq pads (labels with -100, decoder inputs shifted
        from the labels by the model); the target tokens counted."""
        S, T = (max(len(f[k]) for f in features) for k in ("input_ids", "labels"))
        pad = lambda key, width, value: torch.tensor(  # noqa: E731
            [f[key] + [value] * (width - len(f[key])) for f in features])  # fmt: skip
        labels = pad("labels", T, -100)
        counted["tokens"] += int((labels != -100).sum())
        shifted = model.prepare_decoder_input_ids_from_labels(labels=labels)
        mask = pad("attention_mask", S, 0)
        return {"input_ids": pad("input_ids", S, end), "attention_mask": mask,
                "labels": labels, "decoder_input_ids": shifted}  # fmt: skip

    class Budget(TrainerCallback):
        def on_train_begin(self, *_, **__):
            counted["start"] = time.perf_counter()

        def on_step_end(self, _args, state, control, **__):
            counted["seconds"] = time.perf_counter() - counted["start"]
            control.should_training_stop = counted["seconds"] >= args.minutes * 60

    settings = Seq2SeqTrainingArguments(
        output_dir=str(args.out / "marian-trainer"), use_cpu=True, bf16=True, seed=0,
        per_device_train_batch_size=64, train_sampling_strategy="group_by_length",
        max_steps=10**6,
        learning_rate=7e-4, adam_beta2=0.99, weight_decay=0.01, max_grad_norm=1.0,
        warmup_steps=400, lr_scheduler_type="constant_with_warmup", save_strategy="no",
        logging_strategy="no", report_to="none", dataloader_num_workers=0,
        remove_unused_columns=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = Seq2SeqTrainer(model=model, args=settings, train_dataset=rows,
                             data_collator=collate, callbacks=[Budget()])  # fmt: skip
    state = trainer.train()
    seconds = counted["seconds"]
    return {"minutes": seconds / 60, "steps": state.global_step,
            "tokens/s": counted["tokens"] / seconds}, model.eval()  # fmt: skip


@torch.inference_mode()
def marian_translate(
    model, tok, end: int, texts: list[str], beam: int = 1, batch: int = 64
) -> list[str]:
    """Batched `generate`: greedy, or beam search with Hugging Face's defaults."""
    out = []
    for start in range(0, len(texts), batch):
        ids = [[*row[:255], end] for row in tok.encode_batch(texts[start : start + batch])]
        S = max(map(len, ids))
        src = torch.tensor([r + [end] * (S - len(r)) for r in ids])
        keep = torch.tensor([[1] * len(r) + [0] * (S - len(r)) for r in ids])
        made = model.generate(input_ids=src, attention_mask=keep, num_beams=beam, do_sample=False,
                              max_new_tokens=min(2 * S + 10, 255))  # fmt: skip
        out += [tok.decode([t for t in row.tolist() if t != end]).strip() for row in made]
    return out


def plot(table: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"{lo}-{hi}" for lo, hi in BUCKETS]
    for name, row in table.items():
        ax.plot(labels, [row[f"bleu {b}"] for b in labels], marker="o", label=name)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("test BLEU")
    ax.set_title("en-es, equal training minutes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(table: dict[str, dict]) -> str:
    labels = [f"{lo}-{hi}" for lo, hi in BUCKETS]
    head = ["model", "BLEU", "chrF", *(f"BLEU {b}" for b in labels), "minutes", "steps",
            "target tokens/s", "greedy s", "BLEU beam", "beam s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in table.items():
        cells = [name, f"{r['bleu']:.1f}", f"{r['chrf']:.1f}",
                 *(f"{r[f'bleu {b}']:.1f}" for b in labels), f"{r['minutes']:.1f}",
                 str(r["steps"]), f"{r['tokens/s']:.0f}", f"{r['decode s']:.0f}",
                 f"{r['beam bleu']:.1f}" if "beam bleu" in r else "-",
                 f"{r['beam s']:.0f}" if "beam s" in r else "-"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{b}: {next(iter(table.values()))[f'n {b}']}" for b in labels)
    return "\n".join(lines) + f"\n\nTest sources by length (words): {counts}.\n"


def parse_models(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in (*MODELS, *PEERS)]
    if unknown or not keys:
        raise SystemExit(f"--models: unknown {unknown or 'empty'}; choose from "
                         f"{', '.join((*MODELS, *PEERS))}")  # fmt: skip
    if not any(k in MODELS for k in keys):
        raise SystemExit("--models: the peer trains on the tokenizer of one of lmlab's runs; "
                         "name one beside it")  # fmt: skip
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="training minutes per model")
    parser.add_argument("--test", type=int, default=200, help="the first N test pairs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/translate-benchmark"))
    parser.add_argument("--models", type=parse_models, default=[*MODELS, "marian"],
                        help="which to train, comma-separated (default: lmlab's three and "
                        "marian)")  # fmt: skip
    parser.add_argument("--tokenizer", default="byte-bpe",
                        help="a run folder whose tokenizer to share (default: train)")  # fmt: skip
    parser.add_argument("--beam", type=int, default=4, help="beam width (0: no beam)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lmlab.seq2seq.data import read_pairs
    from lmlab.seq2seq.model import load_seq2seq

    args.out.mkdir(parents=True, exist_ok=True)
    test = read_pairs(args.data / "test.tsv", "en", "es")
    sources, refs = test.sources[: args.test], test.targets[: args.test]
    table: dict[str, dict] = {}
    tokenizer: str = args.tokenizer  # by default trained by the first run, then shared
    first_run = None
    for key in [k for k in args.models if k in MODELS]:
        row, run = train_ours(key, args, args.out, tokenizer)
        first_run = first_run or run
        tokenizer = str(first_run)  # the same tokenizer, copied into each run
        s2s = load_seq2seq(run)
        start = time.perf_counter()
        hyps = s2s.translate(sources, batch_size=64)
        row["decode s"] = time.perf_counter() - start
        if args.beam > 1:
            start = time.perf_counter()
            beamed = s2s.translate(sources, beam=args.beam, batch_size=64)
            row["beam s"] = time.perf_counter() - start
            row["beam bleu"] = scores(beamed, refs, sources)["bleu"]
        table[MODELS[key][0]] = {**row, **scores(hyps, refs, sources)}
        print(
            MODELS[key][0], {k: round(v, 2) for k, v in table[MODELS[key][0]].items()}, flush=True
        )
    for key in [k for k in args.models if k in PEERS]:
        from lmlab.text.hf_tokenizer import HFTokenizer
        from lmlab.training.seq2seq import end_id

        train = train_marian if key == "marian" else train_marian_trainer
        row, model = train(args, first_run)
        tok = HFTokenizer(first_run)
        start = time.perf_counter()
        hyps = marian_translate(model, tok, end_id(tok), sources)
        row["decode s"] = time.perf_counter() - start
        if args.beam > 1:
            start = time.perf_counter()
            beamed = marian_translate(model, tok, end_id(tok), sources, beam=args.beam)
            row["beam s"] = time.perf_counter() - start
            row["beam bleu"] = scores(beamed, refs, sources)["bleu"]
        model.save_pretrained(args.out / key)  # to decode again without training again
        table[PEERS[key]] = {**row, **scores(hyps, refs, sources)}
        print(PEERS[key], {k: round(v, 2) for k, v in table[PEERS[key]].items()}, flush=True)
    text = (
        f"en-es, {args.minutes:g} training minutes per model, greedy decoding of the first "
        f"{len(sources)} test pairs (and beam {args.beam} beside it), "
        f"{torch.get_num_threads()} torch threads\n\n" + markdown(table)
    )
    (args.out / "translate.md").write_text(text)
    plot(table, args.out / "bleu_by_length.png")
    print(text)
    print(f"wrote {args.out / 'translate.md'} and {args.out / 'bleu_by_length.png'}")


if __name__ == "__main__":
    main()
