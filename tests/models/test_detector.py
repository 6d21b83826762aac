"""Detectors: torchvision parity (FCOS, RetinaNet), every neck x head, weights for fine-tuning."""

from __future__ import annotations

import logging
import os
import urllib.error
from functools import partial
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from vtk.errors import WeightsError
from vtk.models import ATSS, FCOS, FPN, ASFFNeck, ResNet, RetinaNet, RFBNeck
from vtk.models.detector import COCO80_CATEGORY_IDS, LevelAnchors

SMALL = dict(min_size=160, max_size=200)


def _r50_fpn_like_torchvision(cls, **kwargs):
    backbone = ResNet(
        "resnet50", out_indices=(1, 2, 3), norm_layer=FrozenBatchNorm2d, frozen_stages=1
    )
    return cls(backbone, 91, **kwargs)


@pytest.mark.parametrize(
    "ours,reference,params",
    [
        (FCOS, torchvision.models.detection.FCOS, 32_269_600),
        (RetinaNet, torchvision.models.detection.RetinaNet, 34_014_999),
    ],
)
def test_same_parameters_keys_and_detections_as_torchvision(
    tmp_path, ours, reference, params
) -> None:
    torch.manual_seed(0)
    body = _resnet_fpn_extractor(
        torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d),
        3,
        returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(256, 256),
    )  # fmt: skip  (what fcos_resnet50_fpn / retinanet_resnet50_fpn build)
    tv = reference(body, 91, score_thresh=0.0, **SMALL).eval()
    path = tmp_path / "detector.pth"
    torch.save(tv.state_dict(), path)
    model = _r50_fpn_like_torchvision(ours, score_thresh=0.0, weights=str(path), **SMALL).eval()
    assert (
        sum(p.numel() for p in model.parameters())
        == sum(p.numel() for p in tv.parameters())
        == params
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(
        p.numel() for p in tv.parameters() if p.requires_grad
    )  # frozen stem + layer1
    assert list(model.state_dict()) == list(tv.state_dict())
    images = [torch.rand(3, 150, 190), torch.rand(3, 170, 120)]
    with torch.no_grad():
        for a, b in zip(model(images), tv(images)):
            for key in ("boxes", "scores", "labels"):
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    "ours,builder",
    [(FCOS, torchvision.models.detection.fcos_resnet50_fpn),
     (RetinaNet, torchvision.models.detection.retinanet_resnet50_fpn)],
)  # fmt: skip
def test_without_weights_nothing_stays_frozen_as_in_torchvisions_builders(ours, builder) -> None:
    """torchvision's builders given no weights use BatchNorm2d and train every stage
    (``is_trained`` false); vtk's model asked for FrozenBatchNorm2d and a frozen stem with no
    weights does the same, so its parameters are torchvision's one for one."""
    tv = builder(weights=None, weights_backbone=None, num_classes=91)
    model = _r50_fpn_like_torchvision(ours)
    assert list(model.state_dict()) == list(tv.state_dict())
    for m in (model, tv):
        assert not any(isinstance(x, FrozenBatchNorm2d) for x in m.modules())
    counts = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (model, tv)]
    assert counts[0] == counts[1] == sum(p.numel() for p in tv.parameters())


NECKS = {
    "fpn": FPN,
    "fpn_no_extra": partial(FPN, extra_levels=None),
    "asff": ASFFNeck,
    "rfb": RFBNeck,
}


@pytest.mark.parametrize("head", [FCOS, RetinaNet])
@pytest.mark.parametrize("neck", list(NECKS))
def test_every_neck_with_every_head_trains(neck, head) -> None:
    torch.manual_seed(0)
    model = head(
        ResNet("resnet18", out_indices=(1, 2, 3), attention="se"),
        3,
        neck=NECKS[neck],
        min_size=96,
        max_size=96,
    )
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [40.0, 30.0, 90.0, 80.0]]),
            "labels": torch.tensor([0, 2]),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
        },  # a negative image
    ]
    losses = model.train()([torch.rand(3, 96, 96), torch.rand(3, 80, 96)], targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    detections = model.eval()([torch.rand(3, 64, 80)])
    assert set(detections[0]) == {"boxes", "scores", "labels"}


def test_anchor_sizes_follow_the_neck_strides() -> None:
    fcos = FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), 2, neck=partial(FPN, extra_levels=None))
    assert fcos.anchor_generator.sizes == ((8,), (16,), (32,))
    retina = RetinaNet(ResNet("resnet18", out_indices=(1, 2, 3)), 2)
    assert (
        retina.anchor_generator.sizes[0] == (32, 40, 50) and len(retina.anchor_generator.sizes) == 5
    )


@pytest.mark.parametrize("cls", [FCOS, RetinaNet, ATSS])
def test_heads_and_anchors_are_parts_given_from_outside(cls) -> None:
    """Every one-stage detector takes its head and anchor generator as arguments (called with
    the channels, anchors per place and strides the neck derives), its own by default."""
    from torchvision.models.detection.fcos import FCOSHead

    made: dict[str, tuple] = {}

    def head(in_channels: int, num_anchors: int, num_classes: int) -> torch.nn.Module:
        made["head"] = (in_channels, num_anchors, num_classes)
        return FCOSHead(in_channels, num_anchors, num_classes, num_convs=1)

    octaves = (1.0, 1.5) if cls is RetinaNet else (1.0,)  # (FCOS and ATSS: one per place)

    def anchors(strides):
        made["strides"] = tuple(strides)
        return LevelAnchors(strides, scale=2.0, octave_scales=octaves)

    backbone = ResNet("resnet18", out_indices=(1, 2, 3))
    model = cls(backbone, 3, head=head, anchor_generator=anchors, **SMALL)
    assert made == {"strides": (8, 16, 32, 64, 128), "head": (256, len(octaves), 3)}
    expected = {(1.0,): ((16,), (32,)), (1.0, 1.5): ((16, 24), (32, 48))}[octaves]
    assert model.anchor_generator.sizes[:2] == expected  # 2 x stride x octave
    assert len(model.head.classification_head.conv) == 3  # one conv + GroupNorm + ReLU
    if cls is not RetinaNet:  # (FCOSHead's outputs are what FCOS and ATSS decode)
        model.train()
        losses = model([torch.rand(3, 96, 128)], [{"boxes": torch.tensor([[10.0, 10, 60, 50]]),
                                                    "labels": torch.tensor([1])}])  # fmt: skip
        sum(losses.values()).backward()
    default = cls(ResNet("resnet18", out_indices=(1, 2, 3)), 3, **SMALL)
    assert type(default.head).__name__ == {FCOS: "FCOSHead", RetinaNet: "RetinaNetHead",
                                           ATSS: "ATSSHead"}[cls]  # fmt: skip


def test_the_contributing_guides_head_trains_from_yaml_as_written(tmp_path) -> None:
    """docs/contributing.md's worked example: its module, its YAML and its command (a short
    fit), run as written; the run is the recipe's, its network has the separable towers."""
    import re
    import subprocess

    from helpers import VTK

    guide = (Path(__file__).parents[2] / "docs" / "contributing.md").read_text()
    blocks = dict(re.findall(r"```(python|yaml|bash)\n(.*?)```", guide, re.S))
    code = lambda block: "\n".join(line[4:] for line in block.splitlines())  # noqa: E731
    (tmp_path / "my_heads.py").write_text(code(blocks["python"]))
    (tmp_path / "separable_head.yaml").write_text(code(blocks["yaml"]))
    command = code(blocks["bash"]).strip()
    assert command == "PYTHONPATH=. vtk fit demo_detection --config separable_head.yaml"
    quick = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
             "--trainer.enable_progress_bar", "false", "--data.num_workers", "0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": "."}
    run = subprocess.run([VTK, *command.split()[2:], *quick], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    last = tmp_path / "runs" / "demo_detection" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    depthwise = state["model.head.classification_head.conv.0.0.weight"]
    assert depthwise.shape == (256, 1, 3, 3)  # groups = channels: the guide's head


def test_necks_refuse_strides_that_do_not_double() -> None:
    with pytest.raises(ValueError, match=r"strides double .* got \[8, 16, 16\]"):
        FCOS(ResNet("resnet18", out_indices=(1, 2, 3), output_stride=16), 2)


def test_other_num_classes_reinitialises_only_the_class_logits(tmp_path, caplog) -> None:
    source = FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), 91)
    torch.save(source.state_dict(), tmp_path / "coco.pth")
    with caplog.at_level(logging.WARNING, logger="vtk"):
        target = FCOS(
            ResNet("resnet18", out_indices=(1, 2, 3)), 5, weights=str(tmp_path / "coco.pth")
        )
    assert "re-initialised head.classification_head.cls_logits" in caplog.text
    torch.testing.assert_close(
        target.head.regression_head.bbox_reg.weight, source.head.regression_head.bbox_reg.weight
    )


@pytest.mark.parametrize("cls", [FCOS, RetinaNet])
def test_class_map_keeps_the_rows_of_the_chosen_classes(tmp_path, cls) -> None:
    source = cls(ResNet("resnet18", out_indices=(1, 2, 3)), 91)
    torch.save(source.state_dict(), tmp_path / "coco91.pth")
    target = cls(
        ResNet("resnet18", out_indices=(1, 2, 3)),
        80,
        weights=str(tmp_path / "coco91.pth"),
        weights_class_map="coco80",
    )
    a = source.anchor_generator.num_anchors_per_location()[0]
    src = source.head.classification_head.cls_logits.weight.view(a, 91, -1)
    dst = target.head.classification_head.cls_logits.weight.view(a, 80, -1)
    torch.testing.assert_close(dst, src[:, list(COCO80_CATEGORY_IDS)])
    with pytest.raises(WeightsError, match="one per class"):
        cls(
            ResNet("resnet18", out_indices=(1, 2, 3)),
            3,
            weights=str(tmp_path / "coco91.pth"),
            weights_class_map=[1, 2],
        )


def test_coco_weights_offline_give_a_clear_error(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"could not download torchvision's fcos_resnet50_fpn"):
        FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), 91, weights="coco")


@pytest.mark.parametrize("cls", [FCOS, RetinaNet])
def test_boxes_and_losses_are_fp32_under_bf16_autocast(cls) -> None:
    """Anchors follow the feature maps' dtype: under bf16 autocast torchvision would decode boxes
    in bf16 (4 px steps at 800 px) and compute GIoU / smooth-L1 in it; vtk keeps them fp32."""
    torch.manual_seed(0)
    model = cls(ResNet("resnet18", out_indices=(1, 2, 3)), 3, score_thresh=0.0, **SMALL)
    images = [torch.rand(3, 160, 192)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0]]), "labels": torch.tensor([1])}]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.train()(images, targets)
        with torch.no_grad():
            (detections,) = model.eval()(images)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert detections["boxes"].dtype == detections["scores"].dtype == torch.float32
    assert len(detections["boxes"]) > 0
