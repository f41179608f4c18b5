"""Training-step throughput (images/s) of the trainable purifiers: AToP, IMPure and DiffPure.

On CUDA at the papers' sizes: AToP's DeepFill v2 generator (cnum 48) and its SN-PatchGAN at the 256 px
working size, batch 8 (pretraining, L_org); IMPure's RIAE at ViT-B/MAE-B widths on 32 px CIFAR (patch 4),
batch 32 (pretraining, pixel loss); DiffPure's 35.7M-parameter DDPM CIFAR-10 U-Net, batch 128. On CPU
the CPU-scale models the shipped checkpoints use. Each figure is the median of 5 steps after 2 warm-up
steps on one real training batch. Run: python -m benchmarks.train_step [cpu|cuda]
"""

from __future__ import annotations

import sys
import tempfile

import torch

from benchmarks.common import config, median_seconds
from purebench.train.__main__ import _trainers

PAPER = {
    "atop": ["train.stage=pretrain"],  # the defaults are the paper's: DeepFill cnum 48 at work_size 256, batch 8
    "impure": ["train.stage=pretrain", "defense.model.dim=768", "defense.model.depth=12", "defense.model.heads=12",
               "defense.model.decoder_dim=512", "defense.model.decoder_depth=8", "defense.model.decoder_heads=16",
               "defense.model.out_indices=[0,2,4,6,8]"],
    "diffpure": ["train.batch_size=128", "defense.unet.block_out_channels=[128,256,256,256]",
                 "defense.unet.layers_per_block=2", "defense.unet.norm_num_groups=32",
                 "defense.unet.down_block_types=[DownBlock2D,AttnDownBlock2D,DownBlock2D,DownBlock2D]",
                 "defense.unet.up_block_types=[UpBlock2D,UpBlock2D,AttnUpBlock2D,UpBlock2D]"],
}  # fmt: skip
CPU_SCALE = {
    "atop": ["train.stage=pretrain", "defense.purifier=unet", "defense.purifier_size=32"],
    "impure": ["train.stage=pretrain"],
    "diffpure": [],
}


def time_step(defense: str, overrides: list[str], device: str) -> str:
    with tempfile.TemporaryDirectory() as out:
        cfg = config(f"defense={defense}", *overrides, f"device={device}", f"train.out={out}/ckpt.pt",
                     "train.n_train=512", name="train")  # fmt: skip
        trainer = _trainers()[defense](cfg)
        batch = next(trainer.batches(0, torch.Generator().manual_seed(0)))
        batch = tuple(t.to(trainer.device) for t in batch)

        def step() -> None:
            trainer.step(batch, epoch=0)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        step()  # a second warm-up step (median_seconds makes the first)
        seconds = median_seconds(step, repeats=5)
        params = sum(p.numel() for p in trainer.networks["purifier"].parameters()) / 1e6
        images = batch[0].shape[0]
        return (f"| training step | {defense}: {params:.1f}M-parameter purifier, batch {images}, {device} "
                f"| {seconds * 1000:.0f} ms per step | {images / seconds:.1f} img/s |")  # fmt: skip


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    if device == "cpu":
        torch.set_num_threads(2)
    for defense, overrides in (PAPER if device.startswith("cuda") else CPU_SCALE).items():
        print(time_step(defense, overrides, device), flush=True)


if __name__ == "__main__":
    main()
