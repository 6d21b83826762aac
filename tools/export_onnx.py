"""Export a checkpoint written by `vtk fit` to ONNX, and check it against onnxruntime.

    python tools/export_onnx.py runs/demo_classification/version_0/checkpoints/last.ckpt --out model.onnx
    python tools/export_onnx.py CKPT --size 512 --opset 17

Classification and segmentation: input ``image`` (N, 3, H, W) normalised as in training,
output ``logits``. Detection (torchvision's export path): one ``image`` (3, H, W) in [0, 1],
outputs ``boxes``, ``scores``, ``labels``. The check runs when onnxruntime is installed
(``pip install -e ".[export]"``); otherwise it says so.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="model.onnx")
    parser.add_argument("--size", type=int, default=224, help="example input side")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    import vtk
    from vtk.errors import VTKError
    from vtk.export import export_onnx

    try:
        task = vtk.load(args.checkpoint).task
        report = export_onnx(task, args.out, args.size, args.opset)
    except VTKError as e:
        raise SystemExit(f"export_onnx: error: {e}") from None
    print(f"wrote {report['path']} ({type(task).__name__})")
    if report["checked"]:
        print(
            f"onnxruntime matches PyTorch: max abs difference {report['max_abs_error']:.2e} "
            f"(outputs up to {report['max_abs_value']:.2e})"
        )
    else:
        print(report["note"])


if __name__ == "__main__":
    sys.exit(main())
