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

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import ssd as tv_ssd
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

from vtk.errors import ConfigError
from vtk.models.backbones.vgg import VGG
from vtk.models.detector import _DetectorMixin
from vtk.models.necks.rfb import RFB, RFBs, basic_conv
from vtk.models.weights import no_weights

#: Default boxes per input size: aspect ratios per level, scales (fractions of the input side;
#: one more than levels, for the sqrt(s_k s_k+1) box) and steps. 300: torchvision's
#: ``ssd300_vgg16`` (SSD's COCO setting); 512: SSD512's COCO setting (SSD paper, footnote 5),
#: with the box centres spread over each level's own grid (torchvision's SSD512 levels are
#: 64 ... 8, 6, 4, 1 px, RFB Net512's 64 ... 8, 4, 2, 1: fixed steps would misplace them).
DEFAULT_BOXES: dict[int, dict[str, Any]] = {
    300: dict(
        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    ),
    512: dict(
        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06],
        steps=None,
    ),
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


class SSD(_DetectorMixin, tv_ssd.SSD):
    """SSD300 / SSD512 with vtk's VGG-16, or RFB Net with ``rfb=True``.

    Args:
        backbone: ``VGG(arch="vgg16")`` (its ``weights``: SSD starts from the reduced-fc,
            Caffe-style ``IMAGENET1K_FEATURES``, with ``image_mean``/``image_std`` below).
        num_classes: object classes (background not counted; given by the data in a recipe).
        size: 300 or 512: every image is warped to ``size`` x ``size``.
        rfb: RFB Net's features (Fig. 5) instead of SSD's.
        aspect_ratios, scales, steps: the default boxes (``DefaultBoxGenerator``); default
            :data:`DEFAULT_BOXES` of ``size``. RFB Net's VOC setting is ``aspect_ratios``
            ``[[2, 3]] * 4 + [[2], [2]]`` with ``scales`` from its 30-315 px sizes.
        image_mean, image_std: normalisation of RGB in [0, 1]; default the Caffe convention.
        score_thresh, nms_thresh, detections_per_img, iou_thresh, topk_candidates,
        positive_fraction: torchvision's SSD arguments (its defaults).
        weights: ``"coco"`` (torchvision's ``ssd300_vgg16`` COCO weights; SSD300 only) or a
            path to a whole-detector state_dict. With another ``num_classes`` the class logits
            are re-initialised and the log says so.
    """

    torchvision_name = "ssd300_vgg16"
    class_logits_prefix = "head.classification_head.module_list."  # one conv per level

    def __init__(
        self,
        backbone: VGG,
        num_classes: int,
        size: int = 300,
        rfb: bool = False,
        aspect_ratios: Sequence[Sequence[int]] | None = None,
        scales: Sequence[float] | None = None,
        steps: Sequence[int] | None = None,
        image_mean: Sequence[float] = CAFFE_MEAN,
        image_std: Sequence[float] = CAFFE_STD,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        iou_thresh: float = 0.5,
        topk_candidates: int = 400,
        positive_fraction: float = 0.25,
        weights: str | None = None,
    ) -> None:
        if size not in DEFAULT_BOXES:
            raise ConfigError(f"SSD size must be 300 or 512, got {size}.")
        layers = _vgg16_layers(backbone)
        features: nn.Module = (
            RFBNetFeatures(layers, size)
            if rfb
            else tv_ssd.SSDFeatureExtractorVGG(layers, size == 512)
        )
        boxes = DEFAULT_BOXES[size]
        anchors = DefaultBoxGenerator(
            [list(a) for a in (aspect_ratios or boxes["aspect_ratios"])],
            scales=list(scales or boxes["scales"]),
            steps=list(steps) if steps else boxes["steps"],
        )
        super().__init__(
            features,
            anchors,
            (size, size),
            num_classes + 1,  # + background
            image_mean=list(image_mean),
            image_std=list(image_std),
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            iou_thresh=iou_thresh,
            topk_candidates=topk_candidates,
            positive_fraction=positive_fraction,
        )
        self.num_classes = num_classes
        self.size = size
        if not no_weights(weights):
            self._load_weights(str(weights), None)

    def forward(self, images: Any, targets: list[dict[str, Tensor]] | None = None) -> Any:
        """torchvision's SSD, with labels 0..K-1 outside and 1..K (0 background) inside."""
        if targets is not None:
            targets = [{**t, "labels": t["labels"] + 1} for t in targets]
        out = super().forward(images, targets)
        if isinstance(out, list):  # detections
            for d in out:
                d["labels"] = d["labels"] - 1
        return out
