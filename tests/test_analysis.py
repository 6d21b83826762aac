"""`vtk analyze`: parameters and MACs against known values, receptive fields against hand
computation, the comparison with the data, and an unknown recipe."""

from __future__ import annotations

import numpy as np
import pytest

from vtk.analysis import analyze, compare, receptive_fields, stage_rows
from vtk.errors import ConfigError
from vtk.models import ResNet
from vtk.models.backbones import VGG


def test_resnet50_receptive_fields_params_and_macs() -> None:
    rows = stage_rows(ResNet("resnet50"), 224, rf_height=512)
    # by hand (torchvision's ResNet-50, stride in the 3x3 conv): stem 7x7/2 -> 7, max-pool 3x3/2
    # -> 11 (jump 4); stage 0: three 3x3 -> 11 + 3*2*4 = 35; stage 1: 35 + 2*4 (the strided
    # 3x3) + 3*2*8 = 91; stage 2: 91 + 2*8 + 5*2*16 = 267; stage 3: 267 + 2*16 + 2*2*32 = 427
    assert [r.receptive_field for r in rows[1:]] == [35, 91, 267, 427]
    assert [r.stride for r in rows[1:]] == [4, 8, 16, 32]
    # backbone only: 25,557,032 with the 2048 x 1000 classifier (checked in the CLI test)
    assert sum(r.params for r in rows) == 25_557_032 - 2_049_000
    assert sum(r.macs for r in rows) == pytest.approx(4.087e9, rel=0.01)


def test_vgg16_receptive_fields() -> None:
    # by hand: conv3 x2 -> 5, pool -> 6 (jump 2); +2*2 x2 -> 14, pool -> 16 (jump 4);
    # +2*4 x3 -> 40, pool 44 (jump 8); +2*8 x3 -> 92, pool 100; +2*16 x3 -> 196, pool 212
    fields = receptive_fields(VGG("vgg16"), height=512)
    assert [f for f, _ in fields] == [6, 16, 44, 100, 212]
    assert not any(g for _, g in fields)


def test_global_context_makes_the_field_global() -> None:
    fields = receptive_fields(ResNet("resnet18", attention="se"), height=512)
    assert fields[-1][1]  # SE pools over the whole map


def test_analyze_a_recipe_with_its_data() -> None:
    text = analyze(["demo_detection", "--data", "--rf_height", "512"])
    assert "435 px" in text  # ResNet-18's last stage: 435
    # the demo's 128 px images at min_size 128: boxes of 8-24 px radius, all below 60 px
    assert "validation boxes (after the detector's resize)" in text
    assert "larger than every object" in text


def test_analyze_takes_data_overrides() -> None:
    small = analyze(["demo_segmentation", "--data", "--rf_height", "256", "--size", "96",
                     "--data.crop_size", "96"])  # fmt: skip
    assert "input 96x96" in small and "class regions of 51 validation masks" in small
    with pytest.raises(ConfigError, match="crop_siz"):
        analyze(["demo_segmentation", "--data.crop_siz", "96"])


def test_resnet50_recipe_total(run_vtk, capsys) -> None:
    assert run_vtk("analyze", "resnet50_imagenet", "--rf_height", "512") == 0
    out = capsys.readouterr().out
    assert "25,557,032" in out and "4.089" in out


def test_compare_says_which_objects_are_larger() -> None:
    text = compare(100, False, np.array([50.0, 150.0, 90.0, 300.0]), "boxes")
    assert "smaller than 50.0% of the objects" in text


def test_unknown_recipe_is_a_clear_error(run_vtk) -> None:
    message = run_vtk("analyze", "recipes/nope.yaml")
    assert isinstance(message, str)
    assert message.startswith("vtk: error: recipe recipes/nope.yaml does not exist")
