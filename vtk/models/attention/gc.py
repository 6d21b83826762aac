"""Global Context block (Cao et al., "GCNet", ICCVW 2019 / TPAMI 2020).

Context modelling: a 1x1 conv to one map, softmax over positions, the attention-weighted sum
of features (§4, Fig. 4). Transform: 1x1 conv to C/r, LayerNorm, ReLU, 1x1 conv back to C.
Fusion: broadcast addition. Initialisation as the authors' code (xvjiarui/GCNet,
``ContextBlock.reset_parameters``): the context conv Kaiming-normal (fan in) with a zero bias,
the last conv zero, so a block added to a pretrained network starts as the identity. The
paper's backbone setting is r = 16, in stages c3-c5 (its detection configurations).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GlobalContext(nn.Module):
    """GC block on ``channels`` channels."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.context = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        nn.init.kaiming_normal_(self.context.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.context.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        weights = torch.softmax(self.context(x).view(b, 1, h * w).float(), dim=-1).to(x.dtype)
        context = torch.bmm(x.view(b, c, h * w), weights.transpose(1, 2)).view(b, c, 1, 1)
        return x + self.transform(context)
