"""A tiny name -> factory registry, one instance per kind of component.

Components register themselves with a decorator beside their implementation (as timm does for
models), so adding a defense never means editing a central list. Third-party packages add
entries through the ``purebench.plugins`` entry-point group: each entry point names a module
that is imported once, and whose decorators then register into these same registries.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from purebench.errors import PurebenchError

T = TypeVar("T")

PLUGIN_GROUP = "purebench.plugins"
_plugins_loaded = False


def load_plugins() -> list[str]:
    """Import every module advertised under the ``purebench.plugins`` entry-point group.

    Returns the names of the loaded entry points. Safe to call repeatedly: the import happens once.
    """
    global _plugins_loaded
    loaded: list[str] = []
    if _plugins_loaded:
        return loaded
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()
        loaded.append(ep.name)
    return loaded


class Registry(Generic[T]):
    """Maps names to factories; unknown names fail with the list of choices and close matches."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; a second registration is an error."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def list(self) -> list[str]:
        """Sorted registered names (plugins included)."""
        load_plugins()
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory for ``name``, or a :class:`PurebenchError` listing the choices."""
        load_plugins()
        if name in self._factories:
            return self._factories[name]
        prefix = name.split(":", 1)[0] + ":" if ":" in name else None
        if prefix and prefix in self._factories:
            return self._factories[prefix]
        choices = self.list()
        close = difflib.get_close_matches(name, choices, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise PurebenchError(f"Unknown {self.kind} '{name}'.{hint} Available {self.kind}s: {', '.join(choices)}.")

    def build(self, name: str, **kwargs: Any) -> T:
        """Look up ``name`` and call its factory with ``kwargs``."""
        return self.get(name)(name=name, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._factories
