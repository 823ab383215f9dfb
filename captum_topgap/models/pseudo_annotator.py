"""The ReFF pseudo-annotator: a pix2pix conditional GAN (Isola et al., 2017) that draws relevance masks.

Generator G_φ: a U-Net (strided 4 × 4 convs down, transposed convs up, skip connections) from the image
to a one-channel mask in [0, 1]. Discriminator: a 5-layer PatchGAN on (image, mask) with 64-128-256-512-1
channels. Trained on the annotated subset with the conditional GAN loss + λ_L1 · ‖G(x) − s‖₁ (λ_L1 = 100,
pix2pix's default), Adam lr 2e-4, β = (0.5, 0.999), batch 4 (ReFF supplementary, Table 4b).

Example:
    >>> annotator = PseudoAnnotator(size=32)
    >>> annotator.annotate(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from captum_topgap.data.transforms import batches


def _down(in_chs: int, out_chs: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_chs, out_chs, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(out_chs))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def _up(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_chs, out_chs, 4, 2, 1, bias=False), nn.BatchNorm2d(out_chs), nn.ReLU())


class UNetGenerator(nn.Module):
    """U-Net from (N, in_chans, S, S) to a (N, 1, S, S) mask in [0, 1]; ``depth`` halvings (S divisible by 2^depth)."""

    def __init__(self, in_chans: int = 3, depth: int = 5, width: int = 64) -> None:
        super().__init__()
        channels = [min(width * 2 ** i, 512) for i in range(depth)]
        self.downs = nn.ModuleList(
            _down(in_chans if i == 0 else channels[i - 1], channels[i], norm=i > 0) for i in range(depth))
        self.ups = nn.ModuleList(
            _up(channels[i] * (1 if i == depth - 1 else 2), channels[i - 1]) for i in range(depth - 1, 0, -1))
        self.out = nn.ConvTranspose2d(channels[0] * 2, 1, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A mask in [0, 1] for each image."""
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return torch.sigmoid(self.out(x))


class PatchDiscriminator(nn.Module):
    """5-layer PatchGAN on (image, mask) pairs: 64-128-256-512-1 channels, one logit per patch."""

    def __init__(self, in_chans: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _down(in_chans, 64, norm=False), _down(64, 128), _down(128, 256),
            nn.Conv2d(256, 512, 4, 1, 1, bias=False), nn.BatchNorm2d(512), nn.LeakyReLU(0.2),
            nn.Conv2d(512, 1, 4, 1, 1))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One real/fake logit per patch of each (image, mask) pair."""
        return self.net(torch.cat([image, mask], dim=1))


class PseudoAnnotator(nn.Module):
    """pix2pix generator + discriminator; :meth:`fit` on annotated samples, :meth:`annotate` images.

    Args:
        size: image side (a multiple of 2^depth); depth: U-Net halvings (default: down to 2 × 2, at most 8).
        l1_weight: λ_L1 of pix2pix.
    """

    def __init__(self, size: int = 64, in_chans: int = 3, depth: int | None = None, l1_weight: float = 100.0) -> None:
        super().__init__()
        depth = depth or max(2, min(8, int(math.log2(size)) - 1))
        if size % 2 ** depth:
            raise ValueError(f"`size` {size} must be a multiple of 2^depth = {2 ** depth}.")
        self.generator = UNetGenerator(in_chans, depth)
        self.discriminator = PatchDiscriminator(in_chans + 1)
        self.l1_weight = l1_weight

    @torch.no_grad()
    def annotate(self, images: torch.Tensor) -> torch.Tensor:
        """Soft masks (N, 1, H, W) in [0, 1] for ``images``; the generator's mode is restored afterwards."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(images)
        finally:
            self.generator.train(was_training)

    def fit(self, samples: Sequence, epochs: int = 20, batch_size: int = 4, lr: float = 2e-4, seed: int = 0,
            progress: bool = True) -> list[float]:
        """Train on ``(image, label, mask)`` samples with the conditional GAN loss + λ_L1·L1; returns the mean
        generator loss per epoch.
        """
        generator = torch.Generator().manual_seed(seed)
        loader = batches(samples, batch_size, shuffle=True, generator=generator)
        betas = (0.5, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        self.train()
        history = []
        for _ in tqdm(range(epochs), desc="pseudo-annotator", disable=not progress, leave=False):
            total = 0.0
            for batch in loader:
                x, s = batch.images, batch.masks
                fake = self.generator(x)
                real_logits, fake_logits = self.discriminator(x, s), self.discriminator(x, fake.detach())
                loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                fooled = self.discriminator(x, fake)
                loss_g = (F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
                          + self.l1_weight * F.l1_loss(fake, s))
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                total += float(loss_g.detach()) * len(x)
            history.append(total / max(len(samples), 1))
        return history
