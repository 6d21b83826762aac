"""The scripts in tools/: the augmented-sample grid, log curves — each on the demo recipes,
and their bad inputs."""

from __future__ import annotations

import runpy

import pytest
import torch
from helpers import ROOT
from PIL import Image


def tool(name: str):
    return runpy.run_path(str(ROOT / "tools" / f"{name}.py"), run_name="tool")["main"]


def test_plot_logs_draws_a_run(fit_demo, vtk_log, tmp_path) -> None:
    fit_demo("demo_classification", "--data.image_size", "32")
    run = next(tmp_path.rglob("metrics.csv")).parent
    # vtk fit drew its own curves and said where everything is and what to run next
    assert Image.open(run / "curves.png").size == (1800, 450)  # losses, validation, lr
    summary = next(r.getMessage() for r in vtk_log.records if "fit done" in r.getMessage())
    run, best = run.relative_to(tmp_path), next(run.rglob("best-*.ckpt")).relative_to(tmp_path)
    assert f"Run folder: {run} (config.yaml, metrics.csv, curves.png)" in summary, summary
    assert f"best: {best} (val/acc1 " in summary and f"next: vtk test {best}" in summary, summary
    tool("plot_logs")([str(run), "--out", str(tmp_path / "curves.png")])
    assert Image.open(tmp_path / "curves.png").size == (1800, 450)
    with pytest.raises(SystemExit, match="does not exist"):
        tool("plot_logs")([str(tmp_path / "nope")])


def test_plot_logs_selects_metrics_and_averages_losses_per_epoch(tmp_path) -> None:
    ns = runpy.run_path(str(ROOT / "tools" / "plot_logs.py"), run_name="tool")
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(
        "epoch,step,train/loss,val/mIoU,val/IoU/road,val/acc_global\n"
        "0,9,2.0,,,\n0,19,1.0,,,\n0,44,,0.3,0.8,0.7\n1,59,0.5,,,\n1,89,,0.4,0.9,0.8\n"
    )
    series = ns["select"](ns["read_metrics"](csv_path, by_epoch=True), "val/mIoU,val/acc_*")
    assert series == {
        "train/loss": [(1.0, 1.5), (2.0, 0.5)],  # the mean per epoch, at its end
        "val/mIoU": [(1.0, 0.3), (2.0, 0.4)],
        "val/acc_global": [(1.0, 0.7), (2.0, 0.8)],
    }


@pytest.mark.parametrize("recipe", ["demo_detection", "demo_segmentation", "demo_classification"])
def test_browse_dataset_writes_a_grid(tmp_path, recipe) -> None:
    out = tmp_path / "grid.png"
    tool("browse_dataset")([recipe, "--n", "4", "--tile", "64", "--out", str(out),
                            "--data.num_workers", "0"])  # fmt: skip
    grid = Image.open(out)
    assert grid.size == (4 * 64 + 5 * 2, 64 + 2 * 2)  # four tiles in a row, 2 px apart
    assert torch.tensor(list(grid.getdata())).float().std() > 10  # drawn, not blank


def test_browse_dataset_with_missing_data_is_one_line(tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"browse_dataset: error: Pascal VOC 2012 not found"):
        tool("browse_dataset")([str(ROOT / "recipes" / "deeplab_resnet101_aspp.yaml"),
                                "--data.root", str(tmp_path / "VOC2012")])  # fmt: skip


def test_tensorboard_logger_from_the_command_line(fit_demo, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    fit_demo("demo_classification", "--data.image_size", "32",
             "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
             "--trainer.logger.init_args.save_dir", "tb")  # fmt: skip
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and events[0].parent.parent.name == "demo_classification"


def test_shift_consistency_counts_agreement_by_hand() -> None:
    measure = runpy.run_path(str(ROOT / "tools" / "shift_consistency.py"), run_name="tool")[
        "measure"
    ]
    # image 0 is the same class at every offset; image 1 flips with the column's parity
    predictions = torch.zeros(2, 3, 3, dtype=torch.long)
    predictions[1] = torch.tensor([0, 1, 0]).expand(3, 3)
    result = measure(predictions, labels=[0, 1], pairs=4000, seed=0)
    assert result["top1"] == 1.0  # centre windows (1, 1): classes 0 and 1, labels 0 and 1
    assert result["one_pixel"] == 0.5  # diagonal neighbours of image 1 always differ
    # image 1: two random columns agree with probability (2/3)^2 + (1/3)^2 = 5/9
    assert result["consistency"] == pytest.approx((1 + 5 / 9) / 2, abs=0.02)


def test_shift_consistency_compares_checkpoints(fit_demo, tmp_path, capsys) -> None:
    plain = fit_demo("demo_classification", "--data.image_size", "32", steps=1)
    blur = fit_demo(
        "demo_classification", "--data.image_size", "32", "--model.model.backbone.blur_pool",
        "3", "--trainer.logger.init_args.name", "blur", steps=1,
    )  # fmt: skip
    images = tmp_path / "images" / "circle"
    images.mkdir(parents=True)
    Image.new("RGB", (36, 36), (200, 40, 40)).save(images / "a.png")
    Image.new("RGB", (36, 36), (40, 200, 40)).save(images / "b.png")
    tool("shift_consistency")([str(plain), str(blur), "--images", str(tmp_path / "images"),
                               "--crop", "32"])  # fmt: skip
    out = capsys.readouterr().out
    assert "2 images, 32x32 windows of 36 px images (5^2 offsets)" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("  ")]
    assert [ln.split(":")[0].strip() for ln in lines] == [str(plain), str(blur)]
    assert "vs the first: consistency" in lines[1] and "top-1" in lines[0]


def test_mosaics_carry_the_boxes(tmp_path) -> None:
    """tools/mosaic_coco.py: 4 images of 40x30 -> one 80x60 mosaic, each box moved by its cell."""
    import json

    make_mosaics = runpy.run_path(str(ROOT / "tools" / "mosaic_coco.py"), run_name="tool")[
        "make_mosaics"
    ]

    (tmp_path / "im").mkdir()
    images, anns = [], []
    for i in range(5):  # the fifth is left out (no complete group)
        Image.new("RGB", (40, 30), (50 * i, 0, 0)).save(tmp_path / "im" / f"{i}.jpg")
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 40, "height": 30})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 3, "bbox": [2, 3, 10, 5],
                     "area": 50, "iscrowd": 0})  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                 "categories": [{"id": 3, "name": "c"}]}))  # fmt: skip
    out = make_mosaics(tmp_path / "im", tmp_path / "a.json", tmp_path / "m")
    assert [i["width"] for i in out["images"]] == [80] and len(out["annotations"]) == 4
    assert [a["bbox"][:2] for a in out["annotations"]] == [[2, 3], [42, 3], [2, 33], [42, 33]]
    mosaic = Image.open(tmp_path / "m" / "images" / "mosaic_0000.jpg")
    assert mosaic.size == (80, 60) and mosaic.getpixel((45, 5))[0] > 30  # image 1 top-right


def _peers():
    return runpy.run_path(str(ROOT / "tools" / "peers.py"), run_name="tool")


def _tiny_coco(tmp_path):
    import json

    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 20, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 40, 40], "area": 1600, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "RBC"}, {"id": 2, "name": "WBC"},
                       {"id": 3, "name": "Platelets"}],
    }  # fmt: skip
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(coco))
    return coco, path


def test_the_peers_evaluator_scores_by_cocoeval(tmp_path) -> None:
    ns = _peers()
    coco, gt = _tiny_coco(tmp_path)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 0.9} for a in coco["annotations"]]  # fmt: skip
    scores = ns["coco_scores"](gt, perfect)
    assert scores["AP"] == scores["AP50"] == 100.0
    assert scores["per_class"] == {"RBC": 100.0, "WBC": 100.0, "Platelets": 100.0}
    # the WBC box half off (IoU 1/3): missed at every IoU threshold; a false RBC ranks last
    shifted = [dict(r) for r in perfect]
    shifted[2]["bbox"] = [20, 0, 40, 40]
    shifted.append({"image_id": 2, "category_id": 1, "bbox": [60, 0, 10, 10], "score": 0.1})
    scores = ns["coco_scores"](gt, shifted)
    assert scores["per_class"]["WBC"] == 0.0 and scores["per_class"]["RBC"] == 100.0
    assert scores["AP"] == pytest.approx(200 / 3, abs=0.1)
    assert ns["coco_scores"](gt, [])["AP"] <= 0.0  # nothing found


def test_the_yolo_labels_carry_the_same_boxes(tmp_path) -> None:
    ns = _peers()
    coco, _ = _tiny_coco(tmp_path)
    lines = ns["yolo_lines"](coco, coco["images"][0])
    assert lines == ["0 0.200000 0.300000 0.200000 0.200000",
                     "2 0.650000 0.600000 0.300000 0.400000"]  # fmt: skip
    images = tmp_path / "images"
    images.mkdir()
    for i in coco["images"]:
        Image.new("RGB", (100, 50)).save(images / i["file_name"])
    ns["write_yolo_split"](coco, images, tmp_path / "yolo")
    assert (
        tmp_path / "yolo" / "labels" / "b.txt"
    ).read_text() == "1 0.200000 0.400000 0.400000 0.800000"
    assert (tmp_path / "yolo" / "images" / "a.jpg").resolve() == (images / "a.jpg").resolve()


def test_the_peers_curves_put_both_runs_on_images_seen(tmp_path, monkeypatch) -> None:
    ns = _peers()
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "results.csv").write_text(
        "                  epoch,  metrics/mAP50(B),  metrics/mAP50-95(B)\n1,0.1,0.05\n2,0.3,0.15\n"
    )  # ultralytics pads its header
    run = tmp_path / "vtk" / "runs" / "r" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("data:\n  init_args:\n    batch_size: 8\n")
    (run / "metrics.csv").write_text(
        "epoch,step,train/loss,val/AP,val/AP50\n0,9,1.0,,\n1,24,,0.2,0.5\n3,49,,0.4,0.7\n"
    )
    drawn: dict[str, list] = {}
    import matplotlib.axes

    def plot(self, x, y, *args, **kwargs):
        drawn.setdefault(kwargs["label"], []).append((list(x), list(y)))

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    path = ns["draw_curves"](tmp_path, n_train=205)
    assert path == tmp_path / "curves.png" and path.is_file()
    yolo, ours = drawn["ultralytics YOLO11n"], drawn["vtk FCOS R-10"]
    assert yolo[0] == ([205, 410], [5.0, 15.0]) and yolo[1][1] == [10.0, 30.0]
    assert ours[0] == ([200, 400], [20.0, 40.0]) and ours[1][1] == [50.0, 70.0]


def test_the_peers_commands_of_the_docs_parse_as_written() -> None:
    """Every ``python tools/peers.py`` line of the docs and the results (ultralytics itself is
    not run here): the tool's parser takes it, with the dataset and the folders it names."""
    import shlex

    parser = _peers()["build_parser"]()
    lines = []
    for page in [ROOT / "docs" / "tools.md", ROOT / "docs" / "results.md",
                 *sorted((ROOT / "docs" / "results").glob("*/report.md"))]:  # fmt: skip
        text = page.read_text().replace("\\\n", " ")
        lines += [ln.strip() for ln in text.splitlines() if ln.strip().startswith("python tools/peers.py")]  # fmt: skip
    assert len(lines) >= 4
    for line in lines:
        args = parser.parse_args(shlex.split(line.split("#")[0])[2:])
        assert args.dataset == "bccd" and str(args.root) == "path/to/BCCD", line
