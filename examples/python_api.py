"""purebench from Python, notebook style: one call per evaluation (README "Python API").

Run it as a script (`python examples/python_api.py`, with PUREBENCH_DATA pointing at the data)
or paste the cells into a notebook. Nothing is written to disk: each call returns its figures and
per-example records. The test suite runs this file (tests/test_api.py).
"""

# %% A registered defense against a registered attack, by name
import os

import torch
from torch import nn

import purebench
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.defenses import Defense

result = purebench.evaluate(
    classifier="resnet20", defense="gaussian_blur", attack="pgd", n_examples=8, overrides=["attack.steps=5"]
)
print(f"gaussian_blur vs PGD-5: SA {result['sa']}  RA {result['ra']}  (n={result['n_examples']})")


# %% Your own defense: a Defense subclass (declare whether it is random) ...
class Quantise(Defense):
    """Round each pixel to `levels` grey levels (bit-depth reduction), with a straight-through gradient."""

    def __init__(self, levels: int = 8) -> None:
        super().__init__()
        self.levels = levels

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        rounded = torch.round(x * (self.levels - 1)) / (self.levels - 1)
        return x + (rounded - x).detach()


result = purebench.evaluate(classifier="resnet20", defense=Quantise(), attack="fgsm", threat="adaptive", n_examples=8)
print(f"Quantise vs FGSM, adaptive: SA {result['sa']}  RA {result['ra']}")


# %% ... or any callable, with your own classifier module and your own tensors in [0, 1]
class MyNet(nn.Module):
    """Any nn.Module from images in [0, 1] to logits (here the pretrained ResNet-20 with its normalisation)."""

    def __init__(self) -> None:
        super().__init__()
        pretrained = CLASSIFIERS.build("resnet20")
        self.body, self.mean, self.std = pretrained.net, pretrained.mean, pretrained.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


x, y = DATASETS.build("cifar10", root=os.environ.get("PUREBENCH_DATA", "data")).load(range(8))
result = purebench.evaluate(classifier=MyNet(), defense=lambda im: im.clamp(0.05, 0.95), attack="pgd", x=x, y=y)
robust = [e["index"] for e in result["per_example"] if e["sa_correct"] and e["ra_hits"]]
print(f"clamp vs PGD-10 on your tensors: SA {result['sa']}  RA {result['ra']}; robust examples: {robust}")
