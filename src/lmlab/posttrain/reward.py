"""A reward model: a causal LM with a scalar head on the last hidden state of prompt + answer
(Bradley-Terry, trained by `train_reward`), and best-of-N sampling by its scores.

The run's folder: lmlab.json ({"kind": "reward", "base": SPEC, "lora": ...}), and
adapter.safetensors (the adapters and the head) or model.safetensors (--full).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.runs import RUN_FILE


class RewardModel(nn.Module):
    """score(ids, attention) -> (B,) rewards of right-padded rows (read at their last token)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        self.head = nn.Linear(lm.config.hidden_size, 1)

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        decoder = self.lm.get_decoder()
        hidden = decoder(input_ids=ids, attention_mask=attention).last_hidden_state
        last = attention.sum(1) - 1
        rows = torch.arange(len(ids), device=ids.device)
        return self.head(hidden[rows, last]).squeeze(-1).float()


class Scorer:
    """A trained reward model with its tokenizer: `score(prompt, answers)`."""

    def __init__(self, folder: str | Path) -> None:
        from safetensors.torch import load_file

        from lmlab.posttrain.model import load_base, run_weights_file, trainable
        from lmlab.runs import read_run

        folder = Path(folder)
        if not (folder / RUN_FILE).is_file() or read_run(folder)["kind"] != "reward":
            raise LmlabError(f"{folder} is not a reward model run (lmlab train reward)")
        run = json.loads((folder / RUN_FILE).read_text())
        self.lm = load_base(run["base"])
        self.model = RewardModel(trainable(self.lm.model, run.get("lora"))).eval()
        path = folder / run_weights_file(run.get("lora"))
        try:
            state = load_file(str(path))
            if run.get("lora") is None:
                from lmlab.training.checkpoint import ModelWeights

                ModelWeights(self.model).load(path)
            else:
                missing, unexpected = self.model.load_state_dict(state, strict=False)
                if unexpected or "head.weight" in missing:
                    raise ValueError("other weights than this reward model's")
        except LmlabError:
            raise
        except Exception as e:
            raise LmlabError(f"cannot load weights {path}: {str(e).splitlines()[0]}") from None

    @torch.no_grad()
    def score(self, prompt: str | list[dict[str, str]], answers: list[str]) -> list[float]:
        """The reward of each answer to the prompt (a user message, or a conversation)."""
        from lmlab.posttrain.data import encode_answer
        from lmlab.training.objectives.sft import pad

        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        rows = [encode_answer(self.lm.tokenizer, messages, a) for a in answers]
        device = next(self.model.parameters()).device
        out = []
        for row in rows:  # one at a time: no padding to differ between answers
            ids, attention, _ = pad([row], 0, device)
            out.append(self.model(ids, attention).item())
        return out


def load_reward(folder: str | Path) -> Scorer:
    """The reward model in a `train_reward` run.

    Example:
        >>> lmlab.load_reward("runs/rm").score("Name a fruit.", ["An apple.", "A chair."])
    """
    return Scorer(folder)


def best_of(lm, prompt: str, n: int, reward: str | Path | Scorer, **options) -> list[tuple]:
    """Sample `n` continuations of `prompt` and rank them by the reward model: a list of
    (reward, Choice), best first (the RLHF pipeline's rejection sampling)."""
    from lmlab.decode import generate

    if n < 1:
        raise LmlabError("--best-of must be at least 1")
    scorer = reward if isinstance(reward, Scorer) else Scorer(reward)
    choices = generate(lm, prompt, **{**options, "n": n}).choices
    scores = scorer.score(prompt, [c.text for c in choices])
    return sorted(zip(scores, choices, strict=True), key=lambda x: -x[0])
