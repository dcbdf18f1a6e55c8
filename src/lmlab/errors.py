"""The one exception type for user mistakes and missing resources.

The CLI prints its message on one line and exits with code 2; the server turns it into a 4xx.
Anything else that escapes is a bug in lmlab and keeps its traceback.
"""


class LmlabError(Exception):
    """A mistake the user can fix (bad argument, unknown model, unreadable file)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the offending argument, when there is one (OpenAI's "param")
