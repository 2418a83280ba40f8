"""Encoders and the projection head.

The small ConvNet (width 16: 16-32-64 channels, 64-d features) is the CPU default. Its 64-d
representation caps the linear probe near 0.845 on Fashion-MNIST; a fourth stage (``depth: 4``,
128-d) goes past 0.87 (benchmarks/quality.py). ResNet-18 with the CIFAR stem (3x3 conv, stride 1,
no max-pool) is the papers' encoder for 32 px images. Both run channels_last by default, on the
CPU too (``trainer.channels_last``). The representation that is evaluated is the backbone's pooled
output; the projection head only serves the contrastive loss (SimCLR's finding).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.config import ModelConfig


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """``depth`` conv stages (width, 2w, 4w, ...), a 2x max-pool between stages, then global
    average pooling: the representation is ``width * 2**(depth-1)``-dimensional."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 3):
        super().__init__()
        channels = [width * 2**i for i in range(depth)]
        layers: list[nn.Module] = [conv_block(in_channels, channels[0])]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [nn.MaxPool2d(2), conv_block(c_in, c_out)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def resnet18_cifar(in_channels: int) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem; its ``fc`` removed so it returns 512-d features."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 512
    return net


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class Encoder(nn.Module):
    """backbone + projection head; ``forward`` gives the normalised projection for the loss,
    ``features`` the representation that is evaluated.

    ``channels_last``: the activation layout it runs in (NHWC when True); its weights are stored
    that way and ``extract_features`` feeds it images in that layout. ``proj_dim``: the size of
    the projection a method's queue or memory bank stores."""

    channels_last: bool
    proj_dim: int

    def __init__(self, cfg: ModelConfig, in_channels: int, channels_last: bool = False):
        super().__init__()
        if cfg.backbone == "convnet":
            self.backbone = ConvNet(in_channels, cfg.width, cfg.depth)
        else:
            self.backbone = resnet18_cifar(in_channels)
        self.head = ProjectionHead(self.backbone.out_dim, cfg.proj_hidden, cfg.proj_dim)
        self.proj_dim = cfg.proj_dim
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)


def build_encoder(cfg: ModelConfig, in_channels: int, device: torch.device, channels_last: bool = True) -> Encoder:
    """``channels_last`` (NHWC) is the layout both oneDNN on the CPU (1.32x for the ConvNet's
    training step in benchmarks/throughput.py) and the CUDA tensor cores prefer; the encoder
    keeps the flag, so evaluation uses the same layout."""
    return Encoder(cfg, in_channels, channels_last).to(device)
