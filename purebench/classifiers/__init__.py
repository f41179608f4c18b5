"""Classifiers: registry and the built-in architectures (importing registers them)."""

from purebench.classifiers import cifar_resnet, cifar_resnet_b, hub, robustbench, wide_resnet  # noqa: F401
from purebench.classifiers.base import CLASSIFIERS, Classifier

__all__ = ["CLASSIFIERS", "Classifier"]
