"""He et al. 2016 (§4.2) CIFAR ResNets of 6n+2 layers, built here for resnet20/32/56/110 (n = 3/5/9/18).

conv 3×3 16 → BN → ReLU, three stages of n basic blocks with 16/32/64 channels (the first block of stages 2 and 3
strides 2), global average pool, linear. `shortcut` says what the two blocks that change shape add back:

- B (default): a 1×1 conv + batch-norm projection, as Torch-Pruning's own CIFAR ResNet. Its channels are coupled
  to the block's output by the residual add, so channel strategies remove them together and compaction is exact.
  resnet20/32/56/110 have 272,474 / 466,906 / 855,770 / 1,730,714 parameters (10 classes, 3 channels).
- A: the paper's parameter-free shortcut (every second pixel, new channels zero-padded): exactly the published
  269,722 / 464,154 / 853,018 / 1,727,962 parameters. Weight-level strategies prune it like any model. Channel
  strategies only prune inside the blocks (each block's first conv, as Li et al. 2017 did for ResNet-56/110):
  torch-pruning reads the channel padding as an identity map, which ties every stage's residual channels to the
  first conv, and strategy.keep_first=true (the default) keeps those. With keep_first=false the strategy's check
  refuses the model before training, since removing a residual channel would misalign the padding.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.config import ModelConfig
from progprune_cli.config.schema import choice
from progprune_cli.models.base import ModelBuilder
from progprune_cli.models.resnet_tiny import BasicBlock

WIDTHS = (16, 32, 64)


@dataclass
class CifarResNetConfig(ModelConfig):
    shortcut: str = choice("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A: identity on every `stride`-th pixel; the channels the block adds start at zero on both sides."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.cin, self.stride, self.pad = cin, stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.cin:
            # Channels were removed upstream: the padding no longer lines up with the block's channels. Said here,
            # so a channel strategy's check names the cause instead of a shape mismatch further on.
            raise RuntimeError(f"model.shortcut=A: the zero-padding shortcut expects {self.cin} channels, got "
                               f"{x.shape[1]}; removing residual channels needs model.shortcut=B")
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class CifarResNet(nn.Module):
    def __init__(self, info: DataInfo, blocks: int, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(info.channels, WIDTHS[0], 3, 1, 1, bias=False), nn.BatchNorm2d(WIDTHS[0])
        cin = WIDTHS[0]
        for stage, cout in enumerate(WIDTHS, start=1):
            layers = []
            for block in range(blocks):
                stride = 2 if block == 0 and stage > 1 else 1
                changes = stride != 1 or cin != cout
                pad = ZeroPadShortcut(cin, cout, stride) if shortcut == "A" and changes else None
                layers.append(BasicBlock(cin, cout, stride, pad))
                cin = cout
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.fc = nn.Linear(cin, info.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def builder(blocks: int) -> ModelBuilder:
    """The registry entry of the CIFAR ResNet with `blocks` basic blocks per stage (depth 6·blocks + 2)."""

    def build(cfg: CifarResNetConfig, info: DataInfo) -> nn.Module:
        return CifarResNet(info, blocks, cfg.shortcut)

    return build
