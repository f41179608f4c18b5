"""User-facing errors.

A :class:`PurebenchError` is a mistake the user can fix (bad config value, missing data,
wrong checkpoint). The CLI prints its message as one paragraph and exits non-zero, without a
traceback, because the traceback would bury the one sentence that says what to do.
"""


class PurebenchError(Exception):
    """An error caused by the user's input; its message says what is wrong and what to do."""
