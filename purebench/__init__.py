"""purebench: one evaluation protocol for adversarial purification defenses."""

__version__ = "0.1.0"
