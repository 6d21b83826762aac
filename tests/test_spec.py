"""vtk/spec.py: the evaluation preprocessing described once (InputSpec.steps) and run by both
executors, the albumentations pipeline and the torch-free ONNX runtime, to the same arrays."""

from __future__ import annotations

import numpy as np
import pytest

from vtk.data.transforms import eval_transform
from vtk.deploy import OnnxPredictor
from vtk.spec import InputSpec

SPECS = [
    InputSpec(resize=40, crop=32),  # classification: shorter side, centre crop, ImageNet's
    InputSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), pad_to=(64, 72)),  # padded
    InputSpec(mean=None, std=None),  # detection: RGB in [0, 1], the detector normalises
    InputSpec(resize=24, crop=(20, 16)),  # shrinking, a (height, width) crop
]


def test_the_steps_are_the_spec_in_order() -> None:
    steps = [name for name, _ in InputSpec(resize=40, crop=32, pad_to=48).steps()]
    assert steps == ["resize", "crop", "scale", "normalise", "pad"]
    assert [name for name, _ in InputSpec(mean=None, std=None).steps()] == ["scale"]


@pytest.mark.parametrize("spec", SPECS)
def test_both_executors_prepare_an_image_alike(spec) -> None:
    pytest.importorskip("cv2")  # (the runtime's resize is OpenCV's when it is installed)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)
    torch_side = eval_transform(spec)(image=image)["image"].numpy()
    runtime = OnnxPredictor.__new__(OnnxPredictor)  # the preparation alone, no graph
    runtime.spec = spec.to_dict()
    onnx_side = runtime.prepare(image)
    assert onnx_side.shape == torch_side.shape
    np.testing.assert_allclose(onnx_side, torch_side, atol=1e-5)
