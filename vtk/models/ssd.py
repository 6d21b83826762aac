"""SSD (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016) and RFB Net (Liu, Huang &
Wang, "Receptive Field Block Net for Accurate and Fast Object Detection", ECCV 2018), on
torchvision's ``SSD``.

torchvision's ``SSD`` does the default boxes (``DefaultBoxGenerator``), the matching (IoU 0.5
plus each object's best box), the loss (smooth L1 and cross-entropy with 3:1 hard-negative
mining), the warp of every image to a fixed square and the post-processing. vtk gives it
VGG-16 from vtk's backbone, and with ``rfb=True`` RFB Net's multi-scale features (Fig. 5, the
authors' ``RFB_Net_vgg.py``): RFB-s on conv4_3 in place of SSD's L2 normalisation, an RFB
block on fc7, stride-2 RFB blocks for the next levels (rates 2, 3, 5; 1, 2, 3 for RFBNet512's
256-channel levels), and SSD's plain 1x1 + 3x3 conv pairs (with BN) for the last ones.

Without RFB the model is torchvision's ``ssd300_vgg16`` (and its 512 variant) parameter for
parameter, names included, so torchvision's COCO weights load unchanged and the detections
are the same.

Labels: vtk's data gives classes 0..K-1; SSD's softmax has a background class, so the network
predicts K + 1 classes (index 0 background) and the labels are shifted by one on the way in
and back on the way out.

    >>> model = SSD(VGG("vgg16"), num_classes=20, size=300, rfb=True)
    >>> [f.shape[-1] for f in model.backbone(torch.zeros(1, 3, 300, 300)).values()]
    [38, 19, 10, 5, 3, 1]
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchvision.models.detection import ssd as tv_ssd
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

from vtk.errors import ConfigError, WeightsError
from vtk.models.backbones.base import Backbone
from vtk.models.backbones.vgg import VGG
from vtk.models.detector import OneStageDetector
from vtk.models.necks.rfb import RFB, RFBs, basic_conv
from vtk.models.weights import fetch_weights, no_weights

log = logging.getLogger("vtk")


def _boxes(
    aspect_ratios: list[list[int]], sizes: list[float], size: int, steps: list[int] | None
) -> dict[str, Any]:
    """A default-box setting from its sizes in pixels (``min_sizes`` + the last ``max_size``,
    as SSD's and RFB Net's configs list them) as fractions of the input side."""
    return dict(aspect_ratios=aspect_ratios, scales=[s / size for s in sizes], steps=steps)


_RFB_RATIOS = {300: [[2, 3]] * 4 + [[2], [2]], 512: [[2, 3]] * 5 + [[2], [2]]}
_STEPS = {300: [8, 16, 32, 64, 100, 300], 512: [8, 16, 32, 64, 128, 256, 512]}

#: Default boxes of SSD, by (dataset setting, input size): aspect ratios per level, scales
#: (fractions of the input side; one more than levels, for the sqrt(s_k s_k+1) box) and steps.
#: ("coco", 300) is torchvision's ``ssd300_vgg16``; ("coco", 512) SSD512's COCO setting (SSD
#: paper, footnote 5) with the box centres spread over each level's own grid (torchvision's
#: SSD512 levels are 64 ... 8, 6, 4, 1 px: fixed steps would misplace them); the "voc" ones are
#: SSD's VOC settings (30-315 px at 300, 35.84-537.6 px at 512; ssd.pytorch's config).
SSD_BOXES: dict[tuple[str, int], dict[str, Any]] = {
    ("coco", 300): dict(
        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=_STEPS[300],
    ),
    ("coco", 512): dict(
        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06],
        steps=None,
    ),
    ("voc", 300): _boxes(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        [30, 60, 111, 162, 213, 264, 315],
        300,
        _STEPS[300],
    ),
    ("voc", 512): _boxes(
        [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
        512,
        None,
    ),
}

#: RFB Net's prior boxes (the authors' ``data/config.py``: VOC_300, COCO_300, VOC_512,
#: COCO_512): aspect ratios 2 and 3 on every level but the last two (6, 6, 6, 6, 4, 4 boxes per
#: place at 300), fixed steps, sizes in pixels as the config lists them.
RFB_BOXES: dict[tuple[str, int], dict[str, Any]] = {
    ("voc", 300): _boxes(_RFB_RATIOS[300], [30, 60, 111, 162, 213, 264, 315], 300, _STEPS[300]),
    ("coco", 300): _boxes(_RFB_RATIOS[300], [21, 45, 99, 153, 207, 261, 315], 300, _STEPS[300]),
    ("voc", 512): _boxes(
        _RFB_RATIOS[512],
        [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
        512,
        _STEPS[512],
    ),
    ("coco", 512): _boxes(
        _RFB_RATIOS[512],
        [20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72],
        512,
        _STEPS[512],
    ),
}


def reduced_fc(state: dict[str, Tensor], source: str = "the weights") -> dict[str, Tensor]:
    """SSD's "reduced fc" (SSD §3, "Base network"): VGG-16's fully connected fc6 (4096 x 25088,
    on the 7x7 pool5 map) and fc7 (4096 x 4096) subsampled to the 1024-channel atrous 3x3 fc6
    and 1x1 fc7 SSD and RFB Net start from, by decimation: every 4th output (and fc7 input)
    unit, and every 3rd of fc6's 7x7 taps (rows and columns 0, 3, 6), which the dilation of 6
    spreads back over the same extent. ``state`` is torchvision's whole VGG-16 state_dict
    (``classifier.0`` = fc6, ``classifier.3`` = fc7); returns ``{"fc6.weight", "fc6.bias",
    "fc7.weight", "fc7.bias"}``."""
    names = ("classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias")
    missing = [n for n in names if n not in state]
    shapes = {n: tuple(state[n].shape) for n in names if n in state}
    if missing or shapes != {
        names[0]: (4096, 25088),
        names[1]: (4096,),
        names[2]: (4096, 4096),
        names[3]: (4096,),
    }:
        raise WeightsError(
            f"{source} is not a whole VGG-16 state_dict with its classifier (fc6 4096x25088 as "
            f"classifier.0, fc7 4096x4096 as classifier.3; {'missing ' + ', '.join(missing) if missing else shapes}). "
            "Give torchvision's vgg16 file (vgg16-397923af.pth), not a features-only one."
        )
    fc6 = state[names[0]].reshape(4096, 512, 7, 7)[::4, :, ::3, ::3]
    fc7 = state[names[2]][::4, ::4]
    return {
        "fc6.weight": fc6.contiguous(),
        "fc6.bias": state[names[1]][::4].clone(),
        "fc7.weight": fc7.reshape(1024, 1024, 1, 1).contiguous(),
        "fc7.bias": state[names[3]][::4].clone(),
    }


#: SSD's VGG input: RGB in 0..255 less the mean pixel (the Caffe convention of the reduced-fc
#: VGG-16 that SSD and RFB Net start from, and of torchvision's ``IMAGENET1K_FEATURES``)
CAFFE_MEAN = (0.48235, 0.45882, 0.40784)
CAFFE_STD = (1.0 / 255.0,) * 3


def _vgg16_layers(backbone: VGG) -> nn.Sequential:
    """The conv layers of a plain VGG-16 (what SSD builds on), or a clear error."""
    plugins = backbone.plugin_stages()
    pools = [m for m in backbone.features if isinstance(m, nn.MaxPool2d)]
    if backbone.arch != "vgg16" or len(pools) != 5 or backbone.num_built_stages != 5:
        raise ConfigError(
            f"SSD is built on VGG-16 with all five stages at output stride 32; got "
            f"{backbone.arch} with {len(pools)} max-pools. Use VGG(arch='vgg16')."
        )
    if plugins:
        raise ConfigError(
            f"SSD uses VGG-16's layers, not its plug-ins ({', '.join(plugins)}); build the VGG "
            "without them."
        )
    return backbone.features


class RFBNetFeatures(nn.Module):
    """RFB Net's feature levels on VGG-16 (Fig. 5): RFB-s(conv4_3), RFB(fc7), stride-2 RFBs,
    then 1x1 + 3x3 (300) or 1x1 + 4x4 (512) conv pairs. ``forward`` returns the levels."""

    def __init__(self, layers: nn.Sequential, size: int) -> None:
        super().__init__()
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        layers[pools[2]].ceil_mode = True  # 75 -> 38 at 300, as SSD
        self.features = nn.Sequential(*layers[: pools[3]])  # up to conv4_3's ReLU
        self.norm = RFBs(512, 512)  # in place of SSD's L2 normalisation of conv4_3
        self.fc7 = nn.Sequential(
            *layers[pools[3] : -1],  # pool4, conv5_x (pool5 replaced below)
            nn.MaxPool2d(3, 1, 1),
            nn.Conv2d(512, 1024, 3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, 1),  # fc7
            nn.ReLU(inplace=True),
        )
        wide, narrow = (2, 3, 5), (1, 2, 3)  # the authors' visual = 2 and 1
        levels: list[nn.Module] = [
            RFB(1024, 1024, rates=wide),
            RFB(1024, 512, stride=2, rates=wide),
            RFB(512, 256, stride=2, rates=wide),
        ]
        if size == 512:
            levels += [RFB(256, 256, stride=2, rates=narrow) for _ in range(2)]
            levels.append(
                nn.Sequential(basic_conv(256, 128, 1), basic_conv(128, 256, 4, padding=1))
            )
        else:
            levels += [
                nn.Sequential(basic_conv(256, 128, 1), basic_conv(128, 256, 3, padding=0))
                for _ in range(2)
            ]
        self.levels = nn.ModuleList(levels)
        self.out_channels = [512, 1024, 512, *[256] * (len(levels) - 2)]
        for m in [*self.fc7[-4:], *self.levels.modules(), *self.norm.modules()]:
            if isinstance(m, nn.Conv2d):  # the authors' weights_init: Kaiming, fan out
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.features(x)
        out = [self.norm(x)]
        x = self.fc7(x)
        for level in self.levels:
            x = level(x)
            out.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(out))


def _fc_layers(features: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d]:
    """fc6 and fc7 of SSD's (torchvision's) or RFB Net's feature extractor."""
    if isinstance(features, RFBNetFeatures):
        return features.fc7[-4], features.fc7[-2]
    fc = features.extra[0][-1]  # torchvision: pool4, conv5_x, then (pool5, fc6, ReLU, fc7, ReLU)
    return fc[1], fc[3]


def _load_reduced_fc(features: nn.Module, weights: str) -> None:
    state, source = fetch_weights(weights, "vgg16")
    fc6, fc7 = _fc_layers(features)
    reduced = reduced_fc(state, source)
    with torch.no_grad():
        for name, layer in (("fc6", fc6), ("fc7", fc7)):
            layer.weight.copy_(reduced[f"{name}.weight"])
            layer.bias.copy_(reduced[f"{name}.bias"])
    log.info("fc6 / fc7 from %s's classifier, reduced (SSD's decimation)", source)


class SSD(OneStageDetector, tv_ssd.SSD):
    """SSD300 / SSD512 with vtk's VGG-16, or RFB Net with ``rfb=True``.

    Args:
        backbone: ``VGG(arch="vgg16")`` (its ``weights``: SSD starts from the reduced-fc,
            Caffe-style ``IMAGENET1K_FEATURES``, with ``image_mean``/``image_std`` below).
        num_classes: object classes (background not counted; given by the data in a recipe).
        size: 300 or 512: every image is warped to ``size`` x ``size``.
        rfb: RFB Net's features (Fig. 5) instead of SSD's.
        box_setting: whose default boxes: ``"coco"`` or ``"voc"``, :data:`SSD_BOXES` or, with
            ``rfb``, RFB Net's own :data:`RFB_BOXES` (6, 6, 6, 6, 4, 4 boxes per place at 300).
        aspect_ratios, scales, steps: the default boxes (``DefaultBoxGenerator``), each
            overriding the setting's.
        fc_weights: a whole VGG-16 state_dict (torchvision's ``vgg16`` file, or
            ``"imagenet"`` for it by name) whose classifier becomes fc6 / fc7 by SSD's
            decimation (:func:`reduced_fc`), as SSD and RFB Net start; without it fc6 / fc7 are
            initialised at random (torchvision's SSD). Its conv layers belong to the same
            network: give the backbone the same file and ``image_mean``/``image_std``
            ImageNet's statistics.
        image_mean, image_std: normalisation of RGB in [0, 1]; by default the backbone
            weights' (torchvision's weights enum says: the Caffe convention for
            ``IMAGENET1K_FEATURES``, ImageNet's for ``imagenet``), else torchvision's SSD's (the
            Caffe convention, as its builder and its COCO weights).
        score_thresh, nms_thresh, detections_per_img, iou_thresh, topk_candidates, positive_fraction:
            torchvision's SSD arguments (its defaults).
        weights: ``"coco"`` (torchvision's ``ssd300_vgg16`` COCO weights; SSD300 only) or a
            path to a whole-detector state_dict. With another ``num_classes`` the class logits
            are re-initialised and the log says so.
        head: called as ``head(in_channels, num_anchors, num_classes)`` with one entry per
            level and the classes counting the background (torchvision's ``SSDHead``, the
            default, or your module).
        anchor_generator: the default boxes as a part (torchvision's ``DefaultBoxGenerator``
            with its own arguments, as torchvision's ``SSD`` takes it); None: ``box_setting``
            with ``aspect_ratios`` / ``scales`` / ``steps``.
    """

    torchvision_name = "ssd300_vgg16"
    family_normalisation = (CAFFE_MEAN, CAFFE_STD)  # torchvision's ssd300_vgg16 builder's
    class_logits_prefix = "head.classification_head.module_list."  # one conv per level

    def __init__(
        self,
        backbone: VGG,
        num_classes: int,
        size: int = 300,
        rfb: bool = False,
        box_setting: Literal["coco", "voc"] = "coco",
        aspect_ratios: Sequence[Sequence[int]] | None = None,
        scales: Sequence[float] | None = None,
        steps: Sequence[int] | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        iou_thresh: float = 0.5,
        topk_candidates: int = 400,
        positive_fraction: float = 0.25,
        fc_weights: str | None = None,
        weights: str | None = None,
        head: Callable[[list[int], list[int], int], nn.Module] | None = None,
        anchor_generator: DefaultBoxGenerator | None = None,
    ) -> None:
        if size not in (300, 512):
            raise ConfigError(f"SSD size must be 300 or 512, got {size}.")
        if box_setting not in ("coco", "voc"):
            raise ConfigError(f"box_setting must be 'coco' or 'voc', got {box_setting!r}.")
        self.size, self.rfb, self.fc_weights = size, rfb, fc_weights
        boxes = (RFB_BOXES if rfb else SSD_BOXES)[box_setting, size]
        self.boxes = {
            "aspect_ratios": [list(a) for a in (aspect_ratios or boxes["aspect_ratios"])],
            "scales": list(scales or boxes["scales"]),
            "steps": list(steps) if steps else boxes["steps"],
        }
        self._given_boxes = (anchor_generator,)  # (a tuple: a module before Module.__init__)
        super().__init__(
            backbone, num_classes, None, size, size, image_mean, image_std, score_thresh,
            nms_thresh, detections_per_img, topk_candidates, weights, None, head,
            iou_thresh=iou_thresh, positive_fraction=positive_fraction,
        )  # fmt: skip

    def build_features(self, backbone: Backbone, neck: Any) -> nn.Module:
        """SSD's extra levels on VGG-16 (torchvision's), or RFB Net's; fc6/fc7 reduced from
        ``fc_weights`` when given."""
        layers = _vgg16_layers(backbone)
        features: nn.Module = (
            RFBNetFeatures(layers, self.size)
            if self.rfb
            else tv_ssd.SSDFeatureExtractorVGG(layers, self.size == 512)
        )
        if not no_weights(self.fc_weights):
            _load_reduced_fc(features, str(self.fc_weights))
        return features

    def build_anchors(self, features: nn.Module) -> DefaultBoxGenerator:
        """The ``anchor_generator`` given, else the default boxes of ``box_setting``."""
        return self._given_boxes[0] or DefaultBoxGenerator(**self.boxes)

    def build_head(
        self, features: nn.Module, anchors: nn.Module, num_classes: int
    ) -> nn.Module | None:
        """The ``head`` argument called with each level's channels, boxes per place and the
        classes with background (torchvision's ``SSDHead`` signature); None: torchvision's SSD
        builds its ``SSDHead`` from the same."""
        if self.head_factory is None:
            return None
        from torchvision.models.detection import _utils as det_utils

        channels = det_utils.retrieve_out_channels(features, (self.size, self.size))
        return self.head_factory(channels, anchors.num_anchors_per_location(), num_classes + 1)

    def init_torchvision(
        self, features: nn.Module, anchors: nn.Module, head: nn.Module | None, num_classes: int,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        """torchvision's SSD warps every image to ``size`` x ``size`` and has a background
        class; it takes no ``min_size`` / ``max_size``."""
        kwargs.pop("min_size"), kwargs.pop("max_size")
        tv_ssd.SSD.__init__(
            self, features, anchors, (self.size, self.size), num_classes + 1, head=head, **kwargs
        )

    def forward(self, images: Any, targets: list[dict[str, Tensor]] | None = None) -> Any:
        """torchvision's SSD, with labels 0..K-1 outside and 1..K (0 background) inside."""
        if targets is not None:
            targets = [{**t, "labels": t["labels"] + 1} for t in targets]
        out = super().forward(images, targets)
        if isinstance(out, list):  # detections
            for d in out:
                d["labels"] = d["labels"] - 1
        return out
