"""purebench: one evaluation protocol for adversarial purification defenses."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``purebench.evaluate`` (:mod:`purebench.api`), imported on first use: ``import purebench``
    stays light for the CLI's start-up and for plugins that only register components."""
    if name == "evaluate":
        from purebench.api import evaluate

        return evaluate
    raise AttributeError(f"module 'purebench' has no attribute {name!r}")
