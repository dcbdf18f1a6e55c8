"""A progress bar for the loop's progress callback (the loop itself never prints)."""

from __future__ import annotations

from collections.abc import Callable


class ProgressBar:
    """Turns the loop's progress events into a tqdm bar (stderr; a widget in notebooks).

    `unit` names what the speed counts: tok_s for language models, texts_s for classifiers.
    """

    def __init__(self, unit: str = "tok_s") -> None:
        self.unit, self.bar, self.shown = unit, None, {}

    def __call__(self, event: dict) -> None:
        if "total" in event and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=event["total"], initial=event["step"], unit="step", leave=False)
            return
        bar = self.bar
        if bar is None:
            return
        if "loss" in event:
            bar.update(1)
            self.shown.update(loss=f"{event['loss']:.4f}", **{self.unit: rate_text(event["rate"])})
            bar.set_postfix(self.shown, refresh=False)
        elif "valid_loss" in event:
            self.shown["valid"] = f"{event['valid_loss']:.4f}"
            bar.set_postfix(self.shown)
        elif event.get("done"):
            bar.close()
            self.bar = None


def rate_text(rate: float) -> str:
    """A speed for the bar: whole numbers from 10 up (1,849), two significant digits below
    (0.18 rows/s, where a whole number would read 0)."""
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


def progress_callback(progress: bool | Callable[[dict], None], unit: str = "tok_s"):
    """The callback for a `progress` argument: True, a bar; False, none; or the caller's own."""
    if callable(progress):
        return progress
    return ProgressBar(unit) if progress else None
