"""Keep Hugging Face libraries off the network: lmlab never downloads at run time."""

import os

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
    """Set the offline switches (a user's own explicit setting wins for verbosity only)."""
    for key, value in _SWITCHES.items():
        if key == "TRANSFORMERS_VERBOSITY":
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
