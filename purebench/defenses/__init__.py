"""Defenses: registry, the ``Defense`` interface and the built-in defenses (importing registers them)."""

from purebench.defenses import atop, blur, diffpure, floors, impure, zeropur  # noqa: F401
from purebench.defenses.base import DEFENSES, Defense

__all__ = ["DEFENSES", "Defense"]
