"""One-stage detectors: a vtk backbone and neck under torchvision's FCOS or RetinaNet.

Heads, losses, box coding, anchor generation, the resize / normalise / batch transform and the
post-processing (score threshold, NMS, mapping boxes back to each input image's size) are
torchvision's (``torchvision.models.detection``); vtk gives them any backbone with any plug-in
and any neck, with anchor sizes derived from the neck's strides.

Parameter names are torchvision's (``backbone.body`` = the backbone, ``backbone.fpn`` = the
neck, ``head``), so ``fcos_resnet50_fpn`` / ``retinanet_resnet50_fpn`` checkpoints load
unchanged: configured as those models (ResNet-50 with frozen BN and frozen stem + layer1, FPN
P3-P7) vtk's detectors have their 32,269,600 / 34,014,999 parameters and give their detections.

    >>> model = FCOS(ResNet("resnet50", out_indices=(1, 2, 3)), num_classes=80, neck=FPN)
    >>> model.eval()([torch.rand(3, 480, 640)])[0].keys()
    dict_keys(['boxes', 'scores', 'labels'])

**The detector interface** (what :class:`~vtk.tasks.DetectionTask` relies on; every vtk
detector, :class:`OneStageDetector` and :class:`~vtk.models.SSD`, has it):

* ``forward(images, targets=None)``: ``images`` a list of ``(3, H, W)`` RGB tensors in [0, 1]
  of any sizes; in training with ``targets`` (``boxes`` x1y1x2y2 in pixels, ``labels``
  0..K-1) the dict of losses, otherwise one ``{"boxes", "scores", "labels"}`` per image, boxes
  in the image's own pixels;
* ``num_classes``: K;
* ``backbone``: the backbone and neck (torchvision's name), where the convolutions and
  BatchNorms are: what is compiled and BatchNorm-folded;
* :meth:`~_DetectorMixin.resize_range`: the (shorter side, longer cap) images are resized to,
  which the data reads to decode large JPEGs no larger than needed.

**Parts.** ``head`` and ``anchor_generator`` are arguments of every one-stage detector, as
torchvision's detectors take theirs: a new head is one module (a class called as ``head(in_channels,
num_anchors, num_classes)``) and three lines of YAML under ``FCOS``, ``RetinaNet`` or ``ATSS``
(docs/contributing.md has a worked example).

**Adding a one-stage detector** (new matching, loss or post-processing) is one file: a subclass
of :class:`OneStageDetector` and of the torchvision detector whose matching, loss and
post-processing it uses, with :meth:`~OneStageDetector.default_anchors` and
:meth:`~OneStageDetector.default_head`, then one import line in ``vtk/models/__init__.py``
and one line in ``vtk/registry.py`` (``MODELS``: what ``vtk list`` reads).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchvision.models.detection as tvd
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FrozenBatchNorm2d

from vtk.errors import WeightsError
from vtk.models.backbones.base import Backbone, release_if_untrained
from vtk.models.necks.fpn import FPN
from vtk.models.weights import (
    load_state_dict,
    no_weights,
    read_state_dict,
    torchvision_state_dict,
)
from vtk.spec import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("vtk")

#: COCO's 80 category ids in order: the rows of a 91-way torchvision COCO classifier that an
#: 80-class COCO model (contiguous labels 0-79) keeps (``weights_class_map: coco80``).
COCO80_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)  # fmt: skip

#: A neck class (or partial) called as ``neck(in_channels, in_strides)``.
NeckFactory = Callable[[Sequence[int], Sequence[int]], nn.Module]
#: A head class (or partial) called as ``head(in_channels, num_anchors, num_classes)``:
#: torchvision's ``FCOSHead`` and ``RetinaNetHead`` are such classes (their other arguments,
#: ``num_convs``, ``norm_layer``, ... from the recipe's ``init_args``).
HeadFactory = Callable[[int, int, int], nn.Module]
#: An anchor generator class (or partial) called as ``anchor_generator(strides)`` with the
#: neck's strides: :class:`LevelAnchors`.
AnchorFactory = Callable[[Sequence[int]], nn.Module]


class LevelAnchors(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` with its sizes derived from the feature levels'
    strides: on a level of stride ``s``, anchors of ``int(scale * s * o)`` pixels for each
    octave ``o`` of ``octave_scales`` and each of ``aspect_ratios`` (so the sizes follow the
    neck, never typed per level).

    FCOS: ``scale`` 1 (one point per location); RetinaNet: ``scale`` 4, octaves 2^0, 2^(1/3),
    2^(2/3), ratios 0.5, 1, 2 (§4 "Anchors"); ATSS: ``scale`` 8.
    """

    def __init__(
        self,
        strides: Sequence[int],
        scale: float = 1.0,
        octave_scales: Sequence[float] = (1.0,),
        aspect_ratios: Sequence[float] = (1.0,),
    ) -> None:
        sizes = tuple(tuple(int(scale * s * o) for o in octave_scales) for s in strides)
        super().__init__(sizes, (tuple(aspect_ratios),) * len(sizes))

    @staticmethod
    def retinanet(strides: Sequence[int]) -> LevelAnchors:
        """RetinaNet's anchors (see the class)."""
        return LevelAnchors(strides, 4.0, (1.0, 2 ** (1 / 3), 2 ** (2 / 3)), (0.5, 1.0, 2.0))


CLASS_LOGITS = "head.classification_head.cls_logits."


class BackboneWithNeck(nn.Module):
    """What torchvision's detectors call their backbone: the vtk backbone (``body``) and the
    neck (``fpn``, torchvision's name for it), returning the levels as an ordered dict."""

    def __init__(self, backbone: Backbone, neck: NeckFactory) -> None:
        super().__init__()
        self.body = backbone
        self.fpn = neck(backbone.out_channels, backbone.strides)
        self.out_channels: int = self.fpn.out_channels
        self.strides: list[int] = list(self.fpn.strides)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


def _fp32(x: Any) -> Any:
    """``x`` (tensors in dicts and lists) with every floating tensor in float32."""
    if isinstance(x, Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _fp32(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_fp32(v) for v in x)
    return x


class _DetectorMixin:
    """What the detectors add to torchvision's: box arithmetic in fp32, weights loading."""

    torchvision_name: str
    num_classes: int
    #: the class-logit layer(s), re-initialised when weights for other classes are loaded
    class_logits_prefix: str = CLASS_LOGITS

    # Under autocast the head's outputs and the anchors (made in the feature maps' dtype) are
    # bf16/fp16: bf16 resolves 4 px at 800 px, and GIoU's divisions then give non-finite
    # gradients for small boxes (bf16-mixed has no grad scaler to skip such a step: the weights
    # become NaN). So losses and box decoding run in fp32, as mmdet's ``force_fp32`` does.
    def compute_loss(self, targets: Any, head_outputs: Any, anchors: Any, *args: Any) -> Any:
        with torch.autocast(anchors[0].device.type, enabled=False):
            return super().compute_loss(  # type: ignore[misc]
                _fp32(targets), _fp32(head_outputs), _fp32(anchors), *args
            )

    def postprocess_detections(self, head_outputs: Any, anchors: Any, image_shapes: Any) -> Any:
        with torch.autocast(anchors[0][0].device.type, enabled=False):
            return super().postprocess_detections(  # type: ignore[misc]
                _fp32(head_outputs), _fp32(anchors), image_shapes
            )

    def resize_range(self, training: bool = False) -> tuple[int, int]:
        """(shorter side, longer-side cap) the detector resizes images to: the evaluation size,
        or with ``training`` the largest of a multi-scale training's sizes."""
        transform = self.transform  # type: ignore[attr-defined]
        sizes = [int(s) for s in transform.min_size]
        return (max(sizes) if training else sizes[-1]), int(transform.max_size)

    def _load_weights(self, weights: str, class_map: str | Sequence[int] | None) -> None:
        if weights == "coco":
            name = self.torchvision_name
            state, source = torchvision_state_dict(name, "COCO_V1"), f"torchvision {name} COCO_V1"
        else:
            state, source = read_state_dict(weights), weights
        if class_map is not None:
            state = self._select_classes(
                state, COCO80_CATEGORY_IDS if class_map == "coco80" else class_map, source
            )
        load_state_dict(self, state, source, reinit_prefixes=[self.class_logits_prefix])  # type: ignore[arg-type]

    def _select_classes(
        self, state: dict[str, Tensor], rows: Sequence[int], source: str
    ) -> dict[str, Tensor]:
        """Keep the class-logit rows ``rows`` (in order) of every anchor of the loaded head."""
        w, b = state.get(CLASS_LOGITS + "weight"), state.get(CLASS_LOGITS + "bias")
        anchors = self.anchor_generator.num_anchors_per_location()[0]  # type: ignore[attr-defined]
        if w is None or b is None or w.shape[0] % anchors:
            raise WeightsError(
                f"{source} has no class logits layer ({CLASS_LOGITS}*) to select classes from."
            )
        classes = w.shape[0] // anchors
        if len(rows) != self.num_classes or max(rows) >= classes:
            raise WeightsError(
                f"weights_class_map has {len(rows)} entries up to {max(rows)}; it needs one per class "
                f"of the model ({self.num_classes}), each below the {classes} classes of {source}."
            )
        index = torch.tensor([a * classes + r for a in range(anchors) for r in rows])
        log.info(
            "kept class logits %s of %s for the model's %d classes",
            list(rows)[:5],
            source,
            len(rows),
        )
        return {**state, CLASS_LOGITS + "weight": w[index], CLASS_LOGITS + "bias": b[index]}


class OneStageDetector(_DetectorMixin):
    """A vtk backbone and neck under one of torchvision's one-stage detectors: what FCOS and
    RetinaNet share, said once. Built from parts, as torchvision's detectors take theirs: the
    neck, the anchor generator and the head are arguments (classes called with what the parts
    before them give: channels, strides, anchors per place), each with the algorithm's own as
    default (:meth:`default_anchors`, :meth:`default_head`); a subclass (also a subclass of the
    torchvision detector) says those defaults and passes its algorithm's own arguments
    (``**detector_args``) on.

    Args:
        backbone: a vtk backbone; for an FPN, its outputs from C3 (``out_indices: [1, 2, 3]``
            for a ResNet).
        num_classes: classes to detect (given by the data in a recipe).
        neck: called as ``neck(in_channels, in_strides)``: :class:`~vtk.models.necks.FPN`
            (default, P3-P7), ``ASFFNeck`` or ``RFBNeck``.
        min_size, max_size: torchvision's resize of every input: the shorter side to
            ``min_size`` (a list: one drawn per image in training, multi-scale; the last one at
            evaluation) unless the longer side would exceed ``max_size``. Boxes come back in
            the input image's coordinates.
        image_mean, image_std: normalisation (inputs are RGB floats in [0, 1]); by default
            what the weights were trained with: the backbone's (:attr:`Backbone.weights_norm`:
            torchvision's weights enum, timm's ``pretrained_cfg``, a vtk card), else the
            detector family's as torchvision builds it (:attr:`family_normalisation`: ImageNet's,
            SSD's Caffe convention), which ``weights: coco`` also takes.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: torchvision's
            post-processing arguments.
        weights: ``"coco"`` (torchvision's COCO weights of :attr:`torchvision_name`) or a path
            to a whole-detector state_dict. With another ``num_classes`` the class logits are
            re-initialised and the log says so.
        weights_class_map: rows of the loaded class logits to keep, one per class of this model:
            a list, or ``"coco80"`` for an 80-class COCO model from torchvision's 91-way weights.
        head: called as ``head(in_channels, num_anchors, num_classes)`` (None: the detector's
            own, :meth:`default_head`): a class such as torchvision's ``FCOSHead`` or your own
            module, given in a recipe by ``class_path`` and its other arguments.
        anchor_generator: called as ``anchor_generator(strides)`` (None: the detector's own,
            :meth:`default_anchors`): :class:`LevelAnchors` with its options.
        **detector_args: the torchvision detector's own arguments.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        neck: NeckFactory = FPN,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        weights: str | None = None,
        weights_class_map: str | Sequence[int] | None = None,
        head: HeadFactory | None = None,
        anchor_generator: AnchorFactory | None = None,
        **detector_args: Any,
    ) -> None:
        self.head_factory, self.anchor_factory = head, anchor_generator
        image_mean, image_std = self.normalisation(backbone, image_mean, image_std, weights)
        features = self.build_features(backbone, neck)
        anchors = self.build_anchors(features)
        head = self.build_head(features, anchors, num_classes)
        self.init_torchvision(
            features,
            anchors,
            head,
            num_classes,
            min_size=_sizes(min_size),
            max_size=max_size,
            image_mean=list(image_mean),
            image_std=list(image_std),
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            topk_candidates=topk_candidates,
            **detector_args,
        )
        self.num_classes = num_classes
        if not no_weights(weights):
            self._load_weights(str(weights), weights_class_map)
        release_if_untrained(self, backbone, loaded=not no_weights(weights))

    #: torchvision's normalisation for this family of detectors (its builders' and its COCO
    #: weights'): what a detector normalises with when no backbone weights say otherwise
    family_normalisation: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD)

    def normalisation(
        self, backbone: Backbone, mean: Sequence[float] | None, std: Sequence[float] | None,
        weights: str | None,
    ) -> tuple[Sequence[float], Sequence[float]]:  # fmt: skip
        """``image_mean`` / ``image_std`` as given, else the weights' (see the arguments)."""
        if mean is not None and std is not None:
            return mean, std
        norm: Any = self.family_normalisation
        if str(weights) != "coco":  # (torchvision's detector weights: the family's)
            norm = getattr(backbone, "weights_norm", None) or norm
        return (norm[0] if mean is None else mean), (norm[1] if std is None else std)

    # -- what a detector says -------------------------------------------------------------------
    def build_features(self, backbone: Backbone, neck: NeckFactory | None) -> nn.Module:
        """The feature levels: the backbone under the neck (:class:`BackboneWithNeck`)."""
        if neck is None:
            raise ValueError(f"{type(self).__name__} needs a neck.")
        return BackboneWithNeck(backbone, neck)

    def default_anchors(self, strides: Sequence[int]) -> nn.Module:
        """The algorithm's anchor generator for levels of these strides."""
        raise NotImplementedError

    def default_head(self, in_channels: int, num_anchors: int, num_classes: int) -> nn.Module:
        """The algorithm's head."""
        raise NotImplementedError

    def build_anchors(self, features: nn.Module) -> nn.Module:
        """The anchor generator of the feature levels (``features.strides``): the
        ``anchor_generator`` argument's, or :meth:`default_anchors`."""
        return (self.anchor_factory or self.default_anchors)(list(features.strides))

    def build_head(self, features: nn.Module, anchors: nn.Module, num_classes: int) -> nn.Module:
        """The head over the levels (``features.out_channels`` wide, ``anchors`` per place):
        the ``head`` argument's, or :meth:`default_head`."""
        per_place = anchors.num_anchors_per_location()[0]
        return (self.head_factory or self.default_head)(
            features.out_channels, per_place, num_classes
        )

    def init_torchvision(
        self, features: nn.Module, anchors: nn.Module, head: nn.Module | None, num_classes: int,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        """Initialise the torchvision detector (the next class in the method order) with the
        parts and the arguments, torchvision's FCOS / RetinaNet signature."""
        super().__init__(features, num_classes, anchor_generator=anchors, head=head, **kwargs)  # type: ignore[call-arg]


class FCOS(OneStageDetector, tvd.FCOS):
    """FCOS (Tian et al., ICCV 2019) with a vtk backbone and neck, on torchvision's FCOS: one
    point per location, whose "size" is the level's stride (torchvision's 8 ... 128), and
    torchvision's ``FCOSHead`` (``num_convs`` convs per tower).

    Args: as :class:`OneStageDetector`, with torchvision's FCOS defaults (score 0.2, NMS 0.6,
    100 detections) and ``center_sampling_radius`` (1.5), ``num_convs`` (4). ``weights:
    coco`` is torchvision's ``fcos_resnet50_fpn`` COCO_V1.
    """

    torchvision_name = "fcos_resnet50_fpn"

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        neck: NeckFactory = FPN,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        center_sampling_radius: float = 1.5,
        score_thresh: float = 0.2,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        num_convs: int = 4,
        weights: str | None = None,
        weights_class_map: str | Sequence[int] | None = None,
        head: HeadFactory | None = None,
        anchor_generator: AnchorFactory | None = None,
    ) -> None:
        self.num_convs = num_convs
        super().__init__(
            backbone, num_classes, neck, min_size, max_size, image_mean, image_std,
            score_thresh, nms_thresh, detections_per_img, topk_candidates, weights,
            weights_class_map, head, anchor_generator,
            center_sampling_radius=center_sampling_radius,
        )  # fmt: skip

    def default_anchors(self, strides: Sequence[int]) -> nn.Module:
        return LevelAnchors(strides)  # one point per location, its size the level's stride

    def default_head(self, in_channels: int, num_anchors: int, num_classes: int) -> nn.Module:
        return FCOSHead(in_channels, num_anchors, num_classes, self.num_convs)


class RetinaNet(OneStageDetector, tvd.RetinaNet):
    """RetinaNet (Lin et al., ICCV 2017) with a vtk backbone and neck, on torchvision's RetinaNet.

    Anchors: three scales (2^0, 2^(1/3), 2^(2/3)) of 4x each level's stride and aspect ratios
    0.5, 1, 2 (§4 "Anchors"), as torchvision's; torchvision's ``RetinaNetHead``. Arguments as
    :class:`OneStageDetector`, with RetinaNet's ``fg_iou_thresh`` / ``bg_iou_thresh`` (0.5 /
    0.4) and its defaults (score 0.05, NMS 0.5, 300 detections). ``weights: coco`` is
    torchvision's ``retinanet_resnet50_fpn`` COCO_V1, whose frozen BN layers were trained with
    eps 0 (set when it is loaded, as torchvision does).
    """

    torchvision_name = "retinanet_resnet50_fpn"

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        neck: NeckFactory = FPN,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 300,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        topk_candidates: int = 1000,
        weights: str | None = None,
        weights_class_map: str | Sequence[int] | None = None,
        head: HeadFactory | None = None,
        anchor_generator: AnchorFactory | None = None,
    ) -> None:
        super().__init__(
            backbone, num_classes, neck, min_size, max_size, image_mean, image_std,
            score_thresh, nms_thresh, detections_per_img, topk_candidates, weights,
            weights_class_map, head, anchor_generator, fg_iou_thresh=fg_iou_thresh,
            bg_iou_thresh=bg_iou_thresh,
        )  # fmt: skip
        if weights == "coco":
            for m in self.modules():
                if isinstance(m, FrozenBatchNorm2d):
                    m.eps = 0.0

    def default_anchors(self, strides: Sequence[int]) -> nn.Module:
        return LevelAnchors.retinanet(strides)

    def default_head(self, in_channels: int, num_anchors: int, num_classes: int) -> nn.Module:
        return RetinaNetHead(in_channels, num_anchors, num_classes)


def _sizes(min_size: int | Sequence[int]) -> tuple[int, ...]:
    return (int(min_size),) if isinstance(min_size, int) else tuple(int(s) for s in min_size)
