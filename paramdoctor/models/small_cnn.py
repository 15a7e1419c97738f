"""A small CNN for the offline default: digits in well under a second per epoch on a CPU.

Three conv3x3-BN-ReLU blocks (the first two halve the resolution), global
average pooling, dropout and a linear head. Global pooling lets the same network
take 8x8 grey digits and 32x32 RGB CIFAR without changes.
"""

from __future__ import annotations

from torch import Tensor, nn

from paramdoctor.models.heads import DropoutLinear


def _block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """``block1 -> block2 -> block3 -> pool -> head``; the group names the telemetry uses."""

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.0, width: int = 32) -> None:
        super().__init__()
        self.block1 = _block(in_channels, width, pool=True)
        self.block2 = _block(width, 2 * width, pool=True)
        self.block3 = _block(2 * width, 4 * width, pool=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = DropoutLinear(4 * width, num_classes, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.head(self.pool(x).flatten(1))
