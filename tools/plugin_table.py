"""What each plug-in costs on ResNet-50: extra parameters, FLOPs and train-step time.

    python tools/plugin_table.py                  # CPU, batch 4, 160x160, 3 timed steps
    python tools/plugin_table.py --device cuda --batch 32 --size 224 --steps 20

Every variant is the ResNet-50 backbone with a 1000-class classifier, built with one plug-in
argument; times are measured alternating with the plain model in the same run and printed as
ratios (the SENet paper's Table 3 reports the same kind of figures for SE). FLOPs are counted
by ``torch.utils.flop_counter`` at 224x224 (multiply-adds x 2), with deformable convs counted
as the convolution they sample for (bilinear sampling itself not counted).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from vtk.models import Classifier, ResNet
from vtk.models.attention import ATTENTION
from vtk.models.layers import DEFORM_CONV

VARIANTS = {
    "resnet50": {},
    **{f"+ {name}": {"attention": name} for name in ATTENTION},
    "+ non-local (5 blocks, Wang et al.)": {"non_local": {1: [1, 3], 2: [1, 3, 5]}},
    **{
        f"+ deform {v} (stages 2-4)": {"deform": v, "deform_stages": [1, 2, 3]} for v in DEFORM_CONV
    },
    "+ blur_pool 3": {"blur_pool": 3},
    "+ stn": {"stn": True},
}


def _deform_flops(
    x_shape, weight_shape, offset_shape, mask_shape, bias_shape, *args, out_shape=None, **kwargs
):
    # the convolution the sampled values go through: as a conv with the same shapes
    n, _, h, w = offset_shape
    return conv_flop_count(list(x_shape), list(weight_shape), [n, weight_shape[0], h, w])


def count_flops(model: torch.nn.Module, size: int = 224) -> int:
    mapping = {torch.ops.torchvision.deform_conv2d: _deform_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)

    def step_time(model: torch.nn.Module, opt: torch.optim.Optimizer) -> float:
        sync()
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - start

    torch.manual_seed(0)
    plain = Classifier(ResNet("resnet50"), 1000).to(device).train()
    plain_opt = torch.optim.SGD(plain.parameters(), lr=1e-4)
    base_params = sum(p.numel() for p in plain.parameters())
    base_flops = count_flops(Classifier(ResNet("resnet50"), 1000).eval())
    print(
        f"ResNet-50 + plug-in, train step batch {args.batch} x {args.size}^2 on {args.device}, FLOPs at 224^2"
    )
    print("| variant | params | extra params | GFLOPs | extra FLOPs | train step vs plain |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, kwargs in VARIANTS.items():
        model = Classifier(ResNet("resnet50", **kwargs), 1000).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        params = sum(p.numel() for p in model.parameters())
        flops = count_flops(Classifier(ResNet("resnet50", **kwargs), 1000).eval())
        step_time(model, opt), step_time(plain, plain_opt)  # warm-up
        ours, ref = [], []
        for i in range(args.steps):  # alternate A B / B A
            pair = [(ours, model, opt), (ref, plain, plain_opt)]
            for times, m, o in pair if i % 2 == 0 else pair[::-1]:
                times.append(step_time(m, o))
        ratio = statistics.median(ours) / statistics.median(ref)
        print(
            f"| {name} | {params / 1e6:.2f}M | {100 * (params - base_params) / base_params:+.1f} % "
            f"| {flops / 2e9:.2f} | {100 * (flops - base_flops) / base_flops:+.1f} % | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
