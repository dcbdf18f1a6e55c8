"""Keep Hugging Face libraries off the network and quiet where lmlab loads a model.

lmlab never downloads at run time: every model it loads is read with `local_files_only=True`.
`import lmlab` changes nothing for other code in the process: a user's own Hugging Face calls
keep their environment, logging and progress bars. Two scopes are lmlab's own:
- the command line owns its process, so `enforce_offline` turns every switch on for it;
- a library call that loads a model quiets transformers (warnings, progress bars) for the
  duration of that load only (`quiet_transformers`), and puts them back as they were.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_SWITCHES = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def enforce_offline() -> None:
    """Set the offline switches for the whole process: for the `lmlab` command only, which
    owns its process (a user's own explicit setting wins for verbosity only)."""
    for key, value in _SWITCHES.items():
        if key == "TRANSFORMERS_VERBOSITY":
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers logs errors only and draws no progress bar inside; as before after."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    if "TRANSFORMERS_VERBOSITY" not in os.environ:  # the user's explicit choice wins
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
