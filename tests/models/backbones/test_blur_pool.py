"""BlurPool in every family, in the paper's order: a strided conv becomes conv (stride 1) ->
BN -> ReLU -> BlurPool (Zhang 2019 §3.2, "ConvBlurPool"; the authors' antialiased ResNet and
timm), a max-pool becomes max (stride 1) -> BlurPool, an average pool becomes BlurPool. Each
block is recomputed from its own layers in that order."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vtk.models.backbones import create_backbone
from vtk.models.layers import BlurPool2d
from vtk.models.layers.blur_pool import MaxBlurPool2d

TOL = dict(rtol=1e-6, atol=1e-6)


def _random(model: nn.Module) -> nn.Module:
    """float64, eval, with random BN statistics and affine parameters (BN must matter)."""
    torch.manual_seed(0)
    model = model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _blur(x: Tensor) -> Tensor:
    return BlurPool2d(3, 2).double()(x)


def test_resnet_basic_block_blurs_after_bn_and_relu() -> None:
    block = _random(create_backbone("resnet18", blur_pool=3)).layer2[0]
    assert block.conv1.stride == (1, 1)  # the stride moved to the blur
    x = torch.randn(2, 64, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        out = _blur(block.relu(block.bn1(block.conv1(x))))
        out = block.bn2(block.conv2(out)) + block.downsample(_blur(x))
        torch.testing.assert_close(block(x), torch.relu(out), **TOL)
        # the order before (blur between the conv and BN) is another network: the test can tell
        old = block.relu(block.bn1(_blur(block.conv1(x))))
        old = torch.relu(block.bn2(block.conv2(old)) + block.downsample(_blur(x)))
        assert not torch.allclose(block(x), old, atol=1e-3)


def test_resnet_bottleneck_blurs_its_strided_3x3_after_bn_and_relu() -> None:
    block = _random(create_backbone("resnet50", blur_pool=3)).layer2[0]
    assert block.conv2.stride == (1, 1)
    x = torch.randn(2, 256, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        out = block.relu(block.bn1(block.conv1(x)))
        out = _blur(block.relu(block.bn2(block.conv2(out))))
        out = block.bn3(block.conv3(out)) + block.downsample(_blur(x))
        torch.testing.assert_close(block(x), torch.relu(out), **TOL)


def test_cifar_resnet_block_with_the_zero_padding_shortcut() -> None:
    block = _random(create_backbone("resnet20", blur_pool=3, shortcut="A")).layer2[0]
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = _blur(block.relu(block.bn1(block.conv1(x))))
        shortcut = torch.nn.functional.pad(_blur(x), (0, 0, 0, 0, 0, 16))
        out = block.bn2(block.conv2(out)) + shortcut
        torch.testing.assert_close(block(x), torch.relu(out), **TOL)


def test_resnet_stem_max_pool_is_the_authors_2x2_max_then_blur() -> None:
    """antialiased-cnns' ResNet: MaxPool2d(kernel_size=2, stride=1) then BlurPool (stride 2);
    an even map halves as with the plain 3x3 stride-2 pool."""
    model = _random(create_backbone("resnet18", blur_pool=3))
    assert isinstance(model.maxpool, MaxBlurPool2d)
    x = torch.randn(1, 64, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        out = model.maxpool(x)
        torch.testing.assert_close(out, _blur(nn.functional.max_pool2d(x, 2, 1)), **TOL)
    assert out.shape[-2:] == nn.functional.max_pool2d(x, 3, 2, 1).shape[-2:] == (8, 8)


def test_vgg_pools_after_the_stages_last_relu_are_max_then_blur() -> None:
    model = _random(create_backbone("vgg11_bn", blur_pool=3))
    layers = list(model.features)
    pools = [i for i, m in enumerate(layers) if isinstance(m, MaxBlurPool2d)]
    assert len(pools) == 5 and all(isinstance(layers[i - 1], nn.ReLU) for i in pools)
    x = torch.randn(1, 64, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        got = layers[pools[0]](x)
        torch.testing.assert_close(got, _blur(nn.functional.max_pool2d(x, 2, 1)), **TOL)


def test_densenet_transitions_blur_instead_of_average_pooling() -> None:
    model = _random(create_backbone("densenet121", blur_pool=3))
    transition = model.features.transition1
    x = torch.randn(1, 256, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        conv = transition.conv(transition.relu(transition.norm(x)))
        torch.testing.assert_close(transition(x), _blur(conv), **TOL)
