"""The classification model: backbone -> head -> class logits.

>>> model = Classifier(ResNet("resnet50"), num_classes=1000)
>>> sum(p.numel() for p in model.parameters())  # torchvision's resnet50
25557032
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, release_if_untrained
from vtk.models.heads.classification import ClassificationHead
from vtk.models.segmenter import HeadFactory
from vtk.models.weights import fetch_weights, load_state_dict, no_weights


class Classifier(nn.Module):
    """Image classifier.

    Args:
        backbone: any vtk backbone.
        num_classes: classes to predict (given by the data in a recipe).
        head: called as ``head(in_channels, num_classes)``; default
            :class:`~vtk.models.heads.ClassificationHead` (pooling, dropout, linear).
        weights: a whole classifier's weights: ``"imagenet"`` (torchvision's model of the
            backbone's ``arch``, classifier included), another torchvision weights name, or a path
            to a vtk or torchvision state_dict. With another ``num_classes`` the logits layer is
            re-initialised and the log says so. Backbone-only weights go to the backbone's own
            ``weights`` argument instead.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        head: HeadFactory = ClassificationHead,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = backbone
        self.head = head(backbone.out_channels, num_classes)
        if not no_weights(weights):
            self._load(str(weights))
        release_if_untrained(self, backbone, loaded=not no_weights(weights))

    def _load(self, weights: str) -> None:
        state, source = fetch_weights(weights, getattr(self.backbone, "arch", None))
        reinit = [f"head.{self.head.logits_layer}."] if hasattr(self.head, "logits_layer") else []
        load_state_dict(self, self._from_torchvision(state), source, reinit)

    def _from_torchvision(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """torchvision's names (``conv1.weight``, ``fc.weight``) -> vtk's (``backbone.conv1.weight``,
        ``head.fc.weight``); a vtk state_dict passes unchanged."""
        if any(".backbone." in f".{k}" for k in state):
            return dict(state)
        head_keys = getattr(self.head, "torchvision_keys", {})
        out = {}
        for k, v in state.items():
            prefix = next((p for p in head_keys if k.startswith(p)), None)
            out[f"head.{head_keys[prefix]}{k[len(prefix) :]}" if prefix else f"backbone.{k}"] = v
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))
