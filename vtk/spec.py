"""The input contract: how an image is prepared for a network, the dataset statistics and the
label of unscored pixels. A leaf module (standard library only): models, data, tasks and the
torch-free ONNX runtime (:mod:`vtk.deploy`) all import it, and it imports none of them.

Who normalises, per task:

* **classification and segmentation**: the data pipeline (:mod:`vtk.data.transforms`)
  normalises with the DataModule's ``mean`` / ``std``; the network takes normalised tensors;
* **detection**: the detector's own torchvision transform resizes and normalises (its
  ``image_mean`` / ``image_std``, ImageNet's by default), as torchvision's detectors do, so vtk
  gives it RGB in [0, 1] (``InputSpec(mean=None, std=None)``) and its weights load unchanged.

A DataModule says its :class:`InputSpec` (``input_spec``, linked to the task like
``num_classes``), the task keeps it in its hyper-parameters, and so a checkpoint carries it:
``vtk.load``, ``vtk predict`` and ONNX export prepare images exactly as validation did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: The per-channel statistics of RGB in [0, 1] every ImageNet-trained torchvision (and timm)
#: model expects; the default of every vtk input pipeline and detector.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: CIFAR-10's training-set statistics (the CIFAR ResNets' recipes).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: The default label of pixels that are not scored (VOC's object borders, padding); a dataset
#: says its own (``ignore_index``: CamVid's void is 11), linked to the segmentation task.
IGNORE_INDEX = 255


#: one step of :meth:`InputSpec.steps`: its name and its argument
Step = tuple[str, Any]


def hw(value: int | Sequence[int]) -> tuple[int, int]:
    """A side or (height, width) as (height, width)."""
    if isinstance(value, int | float):
        return int(value), int(value)
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class InputSpec:
    """How an image is prepared for a network at evaluation and prediction: what torchvision's
    weights transforms and timm's ``pretrained_cfg`` say about a model.

    The pipeline itself is :func:`vtk.data.transforms.eval_transform` (albumentations) and, in
    the torch-free runtime, :class:`vtk.deploy.OnnxPredictor` (Pillow).

    Args:
        mean, std: normalisation of RGB in [0, 1]; ``None`` for a network that normalises its
            input itself (torchvision's detectors): the image is then RGB in [0, 1].
        resize: resize so that the shorter side has this length (classification: 256).
        crop: centre crop, a side or (height, width) (classification: 224).
        pad_to: pad at the bottom-right to at least this size, a side or (height, width), with
            the mean colour and, for masks, the dataset's unscored label.
    """

    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    resize: int | None = None
    crop: int | tuple[int, int] | None = None
    pad_to: int | tuple[int, int] | None = None

    def steps(self) -> list[Step]:
        """The evaluation preprocessing, in order, as data: what both executors run, the
        albumentations pipeline (:func:`vtk.data.transforms.eval_transform`) and the torch-free
        runtime (:meth:`vtk.deploy.OnnxPredictor.prepare`), so neither restates it.

        ``("resize", side)``: the shorter side to ``side`` (area filter to shrink, linear to
        enlarge); ``("crop", (h, w))``: the centre; ``("scale", None)``: uint8 to [0, 1];
        ``("normalise", (mean, std))``; ``("pad", (h, w))``: bottom-right up to that size with
        0 (after normalisation, the mean colour; masks with the unscored label)."""
        out: list[Step] = []
        if self.resize is not None:
            out.append(("resize", int(self.resize)))
        if self.crop is not None:
            out.append(("crop", hw(self.crop)))
        out.append(("scale", None))
        if self.mean is not None and self.std is not None:
            out.append(("normalise", (tuple(self.mean), tuple(self.std))))
        if self.pad_to is not None:
            out.append(("pad", hw(self.pad_to)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, numbers), as YAML and ``torch.load(weights_only=True)`` take."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InputSpec:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in known.items()})
