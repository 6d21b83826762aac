"""Classifier: torchvision parity with the classifier included, heads, weights."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from vtk.models import VGG, CifarResNet, Classifier, DenseNet, ResNet, VGGHead


@pytest.mark.parametrize(
    "arch,build,params",
    [
        ("resnet50", lambda: Classifier(ResNet("resnet50"), 1000), 25_557_032),
        ("densenet121", lambda: Classifier(DenseNet("densenet121"), 1000), 7_978_856),
        ("vgg11_bn", lambda: Classifier(VGG("vgg11_bn"), 1000, head=VGGHead), 132_868_840),
    ],
)
def test_whole_torchvision_classifiers_load_and_agree(tmp_path, arch, build, params) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    assert sum(p.numel() for p in reference.parameters()) == params
    model = build()
    assert sum(p.numel() for p in model.parameters()) == params
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    model = Classifier(model.backbone, 1000, head=type(model.head), weights=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_other_num_classes_reinitialises_the_logits(tmp_path, caplog) -> None:
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="vtk"):
        model = Classifier(ResNet("resnet18"), 10, weights=str(path))
    assert "re-initialised head.fc" in caplog.text
    assert model.head.fc.out_features == 10


def test_a_vtk_checkpoint_loads_back(tmp_path) -> None:
    a = Classifier(ResNet("resnet18", attention="eca"), 7)
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in a.state_dict().items()}}, tmp_path / "c.ckpt"
    )
    b = Classifier(ResNet("resnet18", attention="eca"), 7, weights=str(tmp_path / "c.ckpt"))
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_cifar_classifier_shapes() -> None:
    model = Classifier(CifarResNet("resnet20"), 10)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
