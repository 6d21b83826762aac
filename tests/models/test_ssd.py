"""SSD: torchvision parity (ssd300_vgg16), RFB Net's feature levels (Fig. 5), labels 0..K-1 in
and out, and what it refuses."""

from __future__ import annotations

import pytest
import torch
import torchvision

from vtk.errors import ConfigError, WeightsError
from vtk.models import SSD
from vtk.models.backbones import VGG
from vtk.models.necks.rfb import RFB, RFBs
from vtk.models.ssd import _fc_layers


def test_ssd300_has_torchvisions_parameters_keys_and_detections(tmp_path) -> None:
    torch.manual_seed(0)
    tv = torchvision.models.detection.ssd300_vgg16(
        weights=None, weights_backbone=None, num_classes=91
    ).eval()
    path = tmp_path / "ssd300.pth"
    torch.save(tv.state_dict(), path)
    ours = SSD(VGG("vgg16"), 90, weights=str(path)).eval()  # 90 classes + background
    assert sum(p.numel() for p in ours.parameters()) == 35_641_826
    assert list(ours.state_dict()) == list(tv.state_dict())
    images = [torch.rand(3, 240, 320), torch.rand(3, 300, 200)]
    with torch.no_grad():
        for a, b in zip(ours(images), tv(images)):
            assert len(a["boxes"]) > 0
            torch.testing.assert_close(a["boxes"], b["boxes"])
            torch.testing.assert_close(a["scores"], b["scores"])
            assert torch.equal(a["labels"] + 1, b["labels"])  # vtk's classes start at 0


@pytest.mark.parametrize(
    "size,sides,rfb_rates",
    [(300, [38, 19, 10, 5, 3, 1], [(2, 3, 5)] * 3),
     (512, [64, 32, 16, 8, 4, 2, 1], [(2, 3, 5)] * 3 + [(1, 2, 3)] * 2)],
)  # fmt: skip
def test_rfb_net_levels_are_the_papers(size: int, sides: list[int], rfb_rates: list) -> None:
    """Fig. 5: RFB-s on conv4_3, RFB on fc7, stride-2 RFBs (the authors' visual 2; visual 1 for
    RFBNet512's 256-channel levels), then plain conv pairs; SSD's level sizes."""
    model = SSD(VGG("vgg16"), 20, size=size, rfb=True).eval()
    features = model.backbone
    assert isinstance(features.norm, RFBs)
    rfbs = [level for level in features.levels if isinstance(level, RFB)]
    rates = [(b.branch0[1][0].dilation[0], b.branch1[2][0].dilation[0], b.branch2[3][0].dilation[0])
             for b in rfbs]  # fmt: skip
    assert rates == rfb_rates
    with torch.no_grad():
        levels = features(torch.zeros(1, 3, size, size))
    assert [v.shape[-1] for v in levels.values()] == sides
    assert [v.shape[1] for v in levels.values()] == features.out_channels
    anchors = model.anchor_generator.num_anchors_per_location()
    assert len(anchors) == len(sides)


def test_labels_are_zero_based_in_training_and_prediction() -> None:
    torch.manual_seed(0)
    model = SSD(VGG("vgg16"), 3, rfb=True)
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[30.0, 20.0, 120.0, 90.0]]), "labels": torch.tensor([0])},
    ]
    losses = model.train()(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert targets[0]["labels"].tolist() == [2]  # the caller's targets are left alone
    with torch.no_grad():
        detections = model.eval()(images)
    labels = torch.cat([d["labels"] for d in detections])
    assert labels.numel() > 0 and int(labels.min()) >= 0 and int(labels.max()) < 3


def test_weights_for_other_classes_reinitialise_only_the_class_logits(tmp_path, caplog) -> None:
    torch.manual_seed(0)
    path = tmp_path / "ssd300_coco.pth"
    torch.save(SSD(VGG("vgg16"), 90).state_dict(), path)  # COCO's 90 + background
    caplog.set_level("INFO", logger="vtk")
    model = SSD(VGG("vgg16"), 20, weights=str(path))
    assert "re-initialised head.classification_head.module_list" in caplog.text
    saved = torch.load(path, weights_only=True)
    for key, value in model.state_dict().items():
        if not key.startswith("head.classification_head"):
            assert torch.equal(value, saved[key]), key


def test_what_ssd_refuses() -> None:
    with pytest.raises(ConfigError, match="SSD is built on VGG-16"):
        SSD(VGG("vgg11"), 20)
    with pytest.raises(ConfigError, match="not its plug-ins"):
        SSD(VGG("vgg16", attention="se"), 20)
    with pytest.raises(ConfigError, match="300 or 512"):
        SSD(VGG("vgg16"), 20, size=320)
    with pytest.raises(ConfigError, match="box_setting"):
        SSD(VGG("vgg16"), 20, box_setting="kitti")


@pytest.mark.parametrize(
    "size,setting,per_place,sides_px",
    [(300, "voc", [6, 6, 6, 6, 4, 4], [30, 60, 111, 162, 213, 264]),
     (300, "coco", [6, 6, 6, 6, 4, 4], [21, 45, 99, 153, 207, 261]),
     (512, "voc", [6, 6, 6, 6, 6, 4, 4], [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8]),
     (512, "coco", [6, 6, 6, 6, 6, 4, 4], [20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8])],
)  # fmt: skip
def test_rfb_net_boxes_are_the_authors(size, setting, per_place, sides_px) -> None:
    """RFB Net's prior boxes (its data/config.py) by default: boxes per place, the square box
    of each level's min size, centred on the level's grid with the config's steps."""
    model = SSD(VGG("vgg16"), 20, size=size, rfb=True, box_setting=setting).eval()
    generator = model.anchor_generator
    assert generator.num_anchors_per_location() == per_place
    with torch.no_grad():
        levels = list(model.backbone(torch.zeros(1, 3, size, size)).values())
    boxes = generator._grid_default_boxes([v.shape[-2:] for v in levels], [size, size])
    start = 0
    for level, (feature, n, side) in enumerate(zip(levels, per_place, sides_px)):
        h, w = feature.shape[-2:]
        first = boxes[start]  # place (0, 0): cx, cy, w, h as fractions; the min-size square first
        step = generator.steps[level]
        assert first[:2].tolist() == pytest.approx([0.5 * step / size] * 2)
        assert first[2:].tolist() == pytest.approx([side / size] * 2)
        start += h * w * n
    assert start == len(boxes)


def test_rfb_net300_voc_has_the_authors_parameter_count() -> None:
    model = SSD(VGG("vgg16"), 20, size=300, rfb=True, box_setting="voc")
    assert sum(p.numel() for p in model.parameters()) == 36_531_296  # RFB_Net_vgg.py, VOC


def test_reduced_fc_is_vgg16s_classifier_decimated(tmp_path) -> None:
    """fc6 = classifier.0 seen as (4096, 512, 7, 7), every 4th unit, taps 0, 3, 6; fc7 =
    classifier.3, every 4th row and column (SSD's reduced fc), read from a saved VGG-16
    state_dict (torchvision's names) into SSD's and RFB Net's fc6 / fc7."""
    torch.manual_seed(0)
    vgg = VGG("vgg16")  # torchvision's features.N names
    full6, full7 = torch.randn(4096, 25088), torch.randn(4096, 4096)
    bias6, bias7 = torch.randn(4096), torch.randn(4096)
    path = tmp_path / "vgg16.pth"
    classifier = {"classifier.0.weight": full6, "classifier.0.bias": bias6,
                  "classifier.3.weight": full7, "classifier.3.bias": bias7}  # fmt: skip
    torch.save({**vgg.state_dict(), **classifier}, path)
    full6 = full6.view(4096, 512, 7, 7)
    for rfb in (False, True):
        model = SSD(VGG("vgg16", weights=str(path)), 20, rfb=rfb, fc_weights=str(path))
        fc6, fc7 = _fc_layers(model.backbone)
        for out_unit, tap in ((0, (0, 0)), (5, (1, 2)), (1023, (2, 1))):
            expected = full6[4 * out_unit, :, 3 * tap[0], 3 * tap[1]]
            assert torch.equal(fc6.weight[out_unit, :, tap[0], tap[1]], expected)
        assert torch.equal(fc6.bias, bias6[::4])
        assert torch.equal(fc7.weight[7, 9, 0, 0], full7[28, 36])
        assert torch.equal(fc7.bias, bias7[::4])
        assert fc6.dilation == (6, 6) and fc7.kernel_size == (1, 1)
        # the conv layers come from the same file
        assert torch.equal(model.backbone.features[0].weight, vgg.features[0].weight)


def test_reduced_fc_needs_the_whole_vgg16(tmp_path) -> None:
    path = tmp_path / "features.pth"
    torch.save(VGG("vgg16").state_dict(), path)  # features only
    with pytest.raises(WeightsError, match="not a whole VGG-16 state_dict"):
        SSD(VGG("vgg16"), 20, fc_weights=str(path))


@pytest.mark.parametrize("rfb", [False, True])
def test_the_head_is_a_part_called_with_each_levels_channels_and_boxes(rfb) -> None:
    from torchvision.models.detection.ssd import SSDHead

    seen = {}

    def head(in_channels, num_anchors, num_classes):
        seen.update(channels=list(in_channels), anchors=list(num_anchors), classes=num_classes)
        return SSDHead(in_channels, num_anchors, num_classes)

    torch.manual_seed(0)
    default = SSD(VGG("vgg16"), 20, rfb=rfb, box_setting="voc")
    torch.manual_seed(0)
    given = SSD(VGG("vgg16"), 20, rfb=rfb, box_setting="voc", head=head)
    assert seen["classes"] == 21 and len(seen["channels"]) == len(seen["anchors"]) == 6
    assert seen["anchors"] == default.anchor_generator.num_anchors_per_location()
    assert sum(p.numel() for p in given.parameters()) == sum(
        p.numel() for p in default.parameters()
    )


def test_the_default_boxes_are_a_part_given_from_yaml() -> None:
    """torchvision's DefaultBoxGenerator as SSD's anchor_generator, from a recipe's YAML."""
    from vtk.recipe import instantiate

    spec = {"class_path": "vtk.models.SSD", "init_args": {
        "backbone": {"class_path": "vtk.models.backbones.VGG", "init_args": {"arch": "vgg16"}},
        "num_classes": 3,
        "anchor_generator": {
            "class_path": "torchvision.models.detection.anchor_utils.DefaultBoxGenerator",
            "init_args": {"aspect_ratios": [[2]] * 6, "steps": [8, 16, 32, 64, 100, 300]}},
    }}  # fmt: skip
    model = instantiate(spec, torch.nn.Module)
    assert model.anchor_generator.num_anchors_per_location() == [4] * 6  # 1, 1', 2, 1/2
    default = SSD(VGG("vgg16"), 3)
    assert default.anchor_generator.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    model.eval()([torch.rand(3, 120, 160)])  # the head follows the boxes it was given
