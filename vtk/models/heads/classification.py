"""Image classification heads: the backbone's last map in, class logits out.

Like every head, they take ``(in_channels, num_classes)`` first, ``in_channels`` being the
channels of all the backbone's outputs (from ``feature_info``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ClassificationHead(nn.Module):
    """Global average pooling, dropout, a linear classifier (ResNet / DenseNet style).

    Named ``fc`` as torchvision's ResNet, so ``head.fc`` takes torchvision's ``fc`` (ResNet)
    or ``classifier`` (DenseNet) weights when a whole torchvision classifier is loaded.
    """

    #: torchvision key prefixes of this head's parameters -> the head's own
    torchvision_keys = {"fc.": "fc.", "classifier.": "fc."}
    logits_layer = "fc"

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, dropout: float = 0.0, in_index: int = -1
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels[in_index], num_classes)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = torch.flatten(features[self.in_index].mean((2, 3), keepdim=True), 1)
        return self.fc(self.dropout(x))


class VGGHead(nn.Module):
    """VGG's classifier (Simonyan & Zisserman, Table 1): pooled to 7x7, FC-4096, FC-4096, FC-classes
    with ReLU and dropout 0.5, in torchvision's layout (``classifier.0/3/6``)."""

    torchvision_keys = {"classifier.": "classifier."}
    logits_layer = "classifier.6"

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, dropout: float = 0.5, in_index: int = -1
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(in_channels[in_index] * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.classifier:
            if isinstance(m, nn.Linear):  # torchvision's initialisation
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(features[self.in_index]), 1))
