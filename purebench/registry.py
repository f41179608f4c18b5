"""A tiny name -> factory registry, one instance per kind of component.

Components register themselves with a decorator beside their implementation (as timm does for
models), so adding a defense never means editing a central list. Third-party packages add
entries through the ``purebench.plugins`` entry-point group: each entry point names a module
that is imported once, and whose decorators then register into these same registries.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
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

    def built_type(self, name: str) -> type | None:
        """The class ``name`` builds, read without building it: the factory itself when it is a class, else the
        class its return annotation names. The leaderboard reads class-level declarations this way (a defense's
        ``shattered_gradient``) for rows written before the run files recorded them; a property an instance
        sets in ``__init__`` is not visible here. None when no annotation resolves to a class (none given, a name
        only type checkers import, a ``functools.partial``); a :class:`PurebenchError` for an unknown name."""
        factory = self.get(name)
        if isinstance(factory, type):
            return factory
        try:
            hint = inspect.get_annotations(inspect.unwrap(factory), eval_str=True).get("return")
        except Exception:  # an annotation that does not evaluate here, or an object annotations cannot be read from
            return None
        return hint if isinstance(hint, type) else None

    def build(self, name: str, **kwargs: Any) -> T:
        """Look up ``name`` and call its factory with ``kwargs``, after :func:`check_arguments`."""
        factory = self.get(name)
        check_arguments(factory, f"{self.kind} '{name}'", self.kind, kwargs)
        return factory(name=name, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._factories


_SCALARS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_SUPPLIED = ("classifier", "seed")  # passed by the runner (the built classifier, the top-level seed), not group keys


def _accepts(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` fits a scalar annotation (None when the annotation is not a plain scalar or
    an optional one: those are left to the factory). YAML has no int/float distinction users notice,
    so an int fits ``float``; a bool is not an int here (``steps=true`` is a mistake)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        checks = [_accepts(arg, value) for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None and type(None) in typing.get_args(hint):
            return True
        return None if None in checks else any(checks)
    if hint not in _SCALARS:
        return None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def check_arguments(factory: Callable[..., Any], what: str, group: str, kwargs: dict[str, Any]) -> None:
    """Refuse, before anything is built, a keyword the factory does not take and a value of the wrong
    scalar type, naming the config key (``group.key``) and listing the factory's parameters: a
    Python ``TypeError`` or a failure deep inside a torch call says neither."""
    parameters = {
        k: p for k, p in inspect.signature(factory).parameters.items() if k != "name" and p.kind is not p.VAR_POSITIONAL
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    documented = {k: p for k, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
    listing = ", ".join(
        k if p.default is inspect.Parameter.empty else f"{k} (default {p.default!r})"
        for k, p in documented.items()
        if k not in _SUPPLIED
    )
    unknown = sorted(k for k in kwargs if k not in documented)
    if unknown and not takes_any:
        raise PurebenchError(
            f"{what} has no parameter(s) {', '.join(f'{group}.{k}' for k in unknown)}. Its parameters are: "
            f"{listing}. Remove the key (or fix its spelling); `+{group}.KEY=...` adds a key the {group} does not read."
        )
    missing = [k for k, p in documented.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise PurebenchError(
            f"{what} needs {', '.join(f'{group}.{k}' for k in missing)}; its parameters are: {listing}. Set the "
            f"key in the config group (conf/{group}/) or on the command line."
        )
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # an annotation this Python cannot evaluate: leave the types to the factory
        return
    for key, value in kwargs.items():
        if key in hints and _accepts(hints[key], value) is False:
            wanted = " or ".join(
                _SCALARS.get(a, "null")
                for a in (typing.get_args(hints[key]) or (hints[key],))
                if a in _SCALARS or a is type(None)
            )
            raise PurebenchError(
                f"{group}.{key}={value!r} is not valid: {what} needs {wanted} there. Parameters: {listing}."
            )
