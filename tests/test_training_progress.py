"""The training bar shows what the loop reports: a slow rate stays readable (not 0)."""

from lmlab.training.progress import ProgressBar, rate_text


def test_rates_read_whole_from_ten_and_with_two_digits_below():
    assert rate_text(1849.4) == "1,849"
    assert rate_text(12.6) == "13"
    assert rate_text(0.183) == "0.18"
    assert rate_text(3.14159) == "3.1"


def test_the_bar_shows_loss_rate_and_validation(capsys):
    bar = ProgressBar("rows_s")
    bar({"total": 3, "step": 0})
    bar({"loss": 2.45191, "rate": 0.1834})
    assert bar.bar.n == 1
    assert bar.bar.postfix == "loss=2.4519, rows_s=0.18"
    bar({"valid_loss": 3.34721})
    assert bar.bar.postfix.endswith("valid=3.3472")
    bar({"done": True})
    assert bar.bar is None
