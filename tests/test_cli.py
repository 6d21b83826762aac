"""The `vtk` command: recipes through the real CLI, the config it saves, and its errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import QUIET, ROOT, write_roboflow_yolo
from PIL import Image

from vtk.cli import rewrite_recipe_argv
from vtk.recipe import recipes_dir

DEMO = "demo_segmentation"  # installed recipes, by name
DEEPLAB = str(ROOT / "recipes" / "deeplab_resnet101_aspp.yaml")  # or by path


@pytest.mark.slow
def test_fit_test_predict_demo_through_the_real_cli(vtk_process, run_vtk, capsys, tmp_path) -> None:
    runs = tmp_path / "runs"
    fit = vtk_process(
        "fit", DEMO,
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.logger.init_args.save_dir", str(runs), "--data.num_workers", "0",
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    (run,) = (runs / "demo_segmentation").iterdir()
    config = yaml.safe_load((run / "config.yaml").read_text())  # saved beside the checkpoints
    assert (
        config["model"]["init_args"]["model"]["init_args"]["backbone"]["init_args"]["arch"]
        == "resnet18"
    )
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(
        n.startswith("best-000-") and "miou" in n for n in checkpoints
    )
    assert "val/mIoU" in (run / "metrics.csv").read_text().splitlines()[0]

    last = str(run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert run_vtk("test", DEMO, "--ckpt_path", last, "--trainer.limit_test_batches", "2",
                   "--trainer.logger.init_args.save_dir", str(runs), "--data.num_workers", "0") == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "test/mIoU" in printed and "test/IoU/circle" in printed

    images = tmp_path / "images"
    images.mkdir()
    demo_images = Path(os.environ["VTK_DATA_DIR"]) / "demo_segmentation" / "JPEGImages"
    for p in sorted(demo_images.iterdir())[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "predictions"
    predict = vtk_process(
        "predict",
        DEMO,
        "--ckpt_path",
        last,
        "--data.predict_dir",
        str(images),
        "--output_dir",
        str(out),
        "--trainer.logger",
        "false",
        "--data.num_workers",
        "0",
    )  # fmt: skip  (the real command, as a user runs it)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert "skipping 1 files that are not images" in predict.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(
        p.stem + ".png" for p in images.glob("*.jpg")
    )
    assert sorted(p.name for p in (out / "drawn").iterdir()) == sorted(
        p.name for p in images.glob("*.jpg")
    )  # each image with its label map drawn over it


def test_print_config_shows_the_full_recipe(run_vtk, capsys) -> None:
    assert run_vtk("fit", DEEPLAB, "--print_config") == 0
    config = yaml.safe_load(capsys.readouterr().out)
    backbone = config["model"]["init_args"]["model"]["init_args"]["backbone"]["init_args"]
    assert backbone["arch"] == "resnet101" and backbone["output_stride"] == 16
    assert backbone["multi_grid"] == [1, 2, 4]
    assert config["model"]["init_args"]["model"]["init_args"]["head"]["init_args"][
        "atrous_rates"
    ] == [6, 12, 18]
    assert config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.007
    assert (
        config["trainer"]["max_steps"] == 30000 and config["data"]["init_args"]["crop_size"] == 513
    )


def test_overrides_and_typos(run_vtk, capsys, tmp_path) -> None:
    key = "--model.init_args.model.init_args.backbone.init_args.output_strid"
    assert run_vtk("fit", DEEPLAB, key, "8", "--print_config") == 2
    assert "output_strid" in capsys.readouterr().err

    recipe = yaml.safe_load((recipes_dir() / f"{DEMO}.yaml").read_text())
    recipe["model"]["init_args"]["model"]["init_args"]["head"]["init_args"]["atrous_rate"] = [
        1,
        2,
        3,
    ]
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(recipe))
    assert run_vtk("fit", str(typo), "--print_config") == 2
    assert "atrous_rate" in capsys.readouterr().err

    assert run_vtk("fit", DEMO, "--model.model.backbone.arch", "resnet5", "--print_config") == 2
    assert "resnet101" in capsys.readouterr().err  # the error lists the valid archs

    assert run_vtk("fit", DEMO, "--model.model.backbone.output_stride", "8", "--print_config") == 0
    assert "output_stride: 8" in capsys.readouterr().out


@pytest.mark.parametrize(
    "given", [DEMO, f"{DEMO}.yaml", f"recipes/{DEMO}.yaml", str(recipes_dir() / f"{DEMO}.yaml")]
)
def test_a_recipe_by_name_or_path_is_rewritten_once(monkeypatch, tmp_path, given) -> None:
    monkeypatch.chdir(tmp_path)  # no recipes/ folder here: the installed recipe is found
    path = str(recipes_dir() / f"{DEMO}.yaml")
    argv = ["vtk", "fit", given, "--trainer.max_epochs", "1"]
    rewrite_recipe_argv(argv)
    assert argv == ["vtk", "fit", "--config", path, "--trainer.max_epochs", "1"]
    rewrite_recipe_argv(argv)  # what a DDP child process sees
    assert argv == ["vtk", "fit", "--config", path, "--trainer.max_epochs", "1"]
    argv = ["vtk", "fit", "--config", given]
    rewrite_recipe_argv(argv)
    assert argv == ["vtk", "fit", "--config", path]


def test_a_recipe_in_the_working_folder_comes_before_an_installed_one(
    monkeypatch, tmp_path
) -> None:
    (tmp_path / "recipes").mkdir()
    own = tmp_path / "recipes" / f"{DEMO}.yaml"
    own.write_text((recipes_dir() / f"{DEMO}.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    argv = ["vtk", "fit", f"recipes/{DEMO}.yaml"]
    rewrite_recipe_argv(argv)
    assert argv == ["vtk", "fit", "--config", f"recipes/{DEMO}.yaml"]


def test_missing_recipe_lists_the_installed_ones(run_vtk) -> None:
    message = run_vtk("fit", "recipes/nope.yaml")
    assert isinstance(message, str)
    assert message.startswith("vtk: error: recipe recipes/nope.yaml does not exist")
    assert "demo_segmentation" in message and "fcos_resnet50_fpn_coco" in message
    assert "Did you mean" not in message


def test_a_misspelt_recipe_name_gets_the_close_one(run_vtk) -> None:
    message = run_vtk("fit", "demo_segmentaton")
    assert isinstance(message, str)
    assert "recipe demo_segmentaton does not exist. Did you mean demo_segmentation?" in message


def test_missing_data_root_is_one_clean_message(vtk_process, tmp_path) -> None:
    result = vtk_process(
        "fit", DEEPLAB, "--data.root", str(tmp_path / "VOC2012"), "--model.model.backbone.weights", "null",
        "--trainer.max_steps", "1", "--trainer.logger", "false",
    )  # fmt: skip
    assert result.returncode == 1
    assert f"vtk: error: Pascal VOC 2012 not found at {tmp_path / 'VOC2012'}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("audit", ["true", "false"])
def test_a_bad_mask_is_one_clean_message(vtk_process, tmp_path, make_voc, audit) -> None:
    """Found by the audit at setup, or (audit off) by the loader worker that reads it."""
    root = make_voc(tmp_path / "VOC2012", {"train": ["a", "b"], "val": ["c"]})
    Image.new("L", (48, 40), 77).save(root / "SegmentationClass" / "a.png")
    result = vtk_process(
        "fit", DEMO, "--data", "vtk.data.VOCSegmentationDataModule", "--data.root", str(root),
        "--data.train_split", "train", "--data.crop_size", "32", "--data.batch_size", "2",
        "--data.num_workers", "1", "--trainer.max_steps", "1", "--trainer.logger", "false",
        "--trainer.num_sanity_val_steps", "0", "--data.audit", audit,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    if audit == "true":
        assert (
            "vtk: error: the train masks hold values that are neither classes (0..20)"
            in result.stderr
        )
        assert f"77 (1920 pixels, e.g. {root / 'SegmentationClass' / 'a.png'})" in result.stderr
    else:
        mask = root / "SegmentationClass" / "a.png"
        assert (
            f"vtk: error: mask {mask} has values 77 (1920 pixels), but num_classes is 21"
            in result.stderr
        )
    assert "Traceback" not in result.stderr


def test_model_options_on_the_command_line_win_over_the_checkpoints(
    run_vtk, fit_demo, monkeypatch
) -> None:
    """Lightning puts a checkpoint's hyper-parameters over the model's config: a detector's
    ``score_thresh`` given to ``vtk test --ckpt_path`` was silently the checkpoint's. What the
    command line names is kept (full path and jsonargparse's short form); the rest is the
    checkpoint's."""
    from vtk.tasks import ClassificationTask

    ckpt = fit_demo("demo_classification", "--model.init_args.label_smoothing", "0.1", steps=1)
    seen: list[tuple] = []

    def spy(self) -> None:
        seen.append((self.label_smoothing, self.top_k))

    monkeypatch.setattr(ClassificationTask, "on_test_start", spy)
    for option in ("--model.init_args.label_smoothing", "--model.label_smoothing"):
        code = run_vtk("test", "demo_classification", "--ckpt_path", ckpt, *QUIET,
                       "--trainer.limit_test_batches", 1, option, "0.3")  # fmt: skip
        assert code == 0
    assert run_vtk("test", "demo_classification", "--ckpt_path", ckpt, *QUIET,
                   "--trainer.limit_test_batches", 1) == 0  # fmt: skip
    assert seen == [(0.3, 4), (0.3, 4), (0.1, 4)]


def test_evaluation_options_of_the_test_run_win_over_the_checkpoints(
    run_vtk, fit_demo, monkeypatch, tmp_path
) -> None:
    """A checkpoint trained with whole-image evaluation and no TTA is tested with sliding
    windows and flip + two scales, as given on the command line (Lightning would otherwise
    restore every task argument from the checkpoint)."""
    from vtk.tasks import SegmentationTask

    ckpt = fit_demo("demo_segmentation", "--data.crop_size", "64", steps=1)
    seen: list[tuple] = []
    logits = SegmentationTask.logits

    def spy(self, images, augment=False):
        seen.append((augment, self.eval_mode, self.window, self.tta_scales, self.tta_flip))
        return logits(self, images, augment)

    monkeypatch.setattr(SegmentationTask, "logits", spy)
    code = run_vtk(
        "test", "demo_segmentation", "--ckpt_path", ckpt, *QUIET, "--trainer.limit_test_batches", 1,
        "--data.val_batch_size", 1, "--model.init_args.eval_mode", "slide", "--model.init_args.window", "48",
        "--model.init_args.tta_scales", "[0.5,1.0]", "--model.init_args.tta_flip", "true",
    )  # fmt: skip
    assert code == 0
    assert seen and set(seen) == {(True, "slide", 48, (0.5, 1.0), True)}
    # the checkpoint alone predicts too (the recipe's data, masks and audit not needed)
    images = tmp_path / "images"
    images.mkdir()
    demo = Path(os.environ["VTK_DATA_DIR"]) / "demo_segmentation"
    for p in sorted(demo.rglob("*.jpg"))[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    assert run_vtk("predict", ckpt, images, "--output_dir", tmp_path / "pred") == 0
    written = sorted(p.name for p in (tmp_path / "pred").rglob("*.png"))
    assert written and all(Path(n).stem in {p.stem for p in images.iterdir()} for n in written)
    # vtk.load's predictor (the same fast path) draws the same class maps
    import vtk

    model = vtk.load(ckpt, device="cpu")
    for p in sorted(images.iterdir()):
        saved = np.asarray(Image.open(tmp_path / "pred" / f"{p.stem}.png"))
        assert np.array_equal(saved, model.predict(p)["labels"]), p.name


def test_list_shows_every_kind_of_component(run_vtk, capsys) -> None:
    assert run_vtk("list") == 0
    out = capsys.readouterr().out
    for expected in ("resnet101", "densenet121", "vgg16_bn", "resnet56", "seresnet50", "attention: se, cbam",
                     "deform: v1, v2", "ASPP", "DeepLabV3Head", "ClassificationTask", "MaskFolderDataModule",
                     "  deeplab_resnet101_aspp: ", "FCOS, RetinaNet", "ASFFNeck", "RFBNeck", "DetectionTask",
                     "CocoDetectionDataModule", "  fcos_resnet50_fpn_coco: "):  # fmt: skip
        assert expected in out, expected
    assert all(f"  {p.stem}: " in out for p in recipes_dir().glob("*.yaml"))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["list"], ["convert", "--help"], []])
def test_help_version_list_and_convert_import_no_torch(args) -> None:
    """What answers at once never imports torch, torchvision or Lightning."""
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['vtk', *sys.argv[1:]]\n"
        "from vtk.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('torch', 'torchvision', 'lightning') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-1500:]
    if args in (["--help"], []):
        for sub in ("fit", "validate", "test", "predict", "list", "analyze", "convert", "export"):
            assert f"\n  {sub} " in out.stdout, sub
    if args == ["--version"]:
        from vtk import __version__

        assert f"vtk {__version__}" in out.stdout


def test_classification_fit_then_predict_writes_a_csv(run_vtk, fit_demo, tmp_path) -> None:
    recipe = "demo_classification"
    last = fit_demo(recipe, "--data.image_size", "32")
    images = tmp_path / "images"
    images.mkdir()
    demo = Path(os.environ["VTK_DATA_DIR"]) / "demo_classification" / "val"
    for p in sorted(demo.rglob("*.png"))[::50]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG truncated")  # reported by path, rest go on
    out = tmp_path / "out"
    assert run_vtk(
        "predict", recipe, "--ckpt_path", str(last), "--data.predict_dir", str(images),
        "--output_dir", str(out), "--trainer.logger", "false", *QUIET,
    ) == 0  # fmt: skip
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "id,path,class1,score1,class2,score2,class3,score3,class4,score4"
    assert len(rows) == len(list(images.iterdir()))  # all but broken.png, plus the header
    assert len(list((out / "drawn").iterdir())) == len(rows) - 1
    assert rows[1].split(",")[2] in ("circle", "square", "star", "triangle")

    # vtk test CKPT: the run's own config and data, results into the run folder's test/
    run = last.parent.parent
    for folder in ("test", "test_2"):
        assert run_vtk("test", last, "--trainer.limit_test_batches", 1, *QUIET) == 0
        assert "test/acc" in (run / folder / "metrics.csv").read_text().splitlines()[0]
    stray = tmp_path / "stray.ckpt"
    stray.write_bytes(last.read_bytes())
    message = run_vtk("test", stray)
    assert isinstance(message, str) and message.startswith(f"vtk: error: {stray} is not in a run")
    assert "\n" not in message and f"--ckpt_path {stray}" in message


@pytest.mark.slow
def test_detection_fit_test_predict_and_a_foreign_checkpoint(
    run_vtk, vtk_process, fit_demo, capsys, tmp_path, vtk_log, monkeypatch
) -> None:
    recipe = "demo_detection"
    small = ("--model.init_args.model.init_args.min_size", "96",
             "--model.init_args.model.init_args.max_size", "96", "--data.num_workers", "0")  # fmt: skip
    last = str(fit_demo(recipe, *small))

    out = tmp_path / "test"
    capsys.readouterr()
    assert run_vtk("test", recipe, "--ckpt_path", last, "--trainer.limit_test_batches", "2",
                   "--trainer.logger", "false", "--output_dir", str(out), *small) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "test/AP50" in printed and "test/AP/circle" in printed
    results = json.loads((out / "coco_results.json").read_text())
    val = json.loads(
        (Path(os.environ["VTK_DATA_DIR"]) / "demo_detection/annotations/val.json").read_text()
    )
    assert {r["image_id"] for r in results} <= {i["id"] for i in val["images"]}
    assert {r["category_id"] for r in results} <= {c["id"] for c in val["categories"]}

    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((Path(os.environ["VTK_DATA_DIR"]) / "demo_detection/val").iterdir())[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")  # unreadable
    assert run_vtk("predict", recipe, "--ckpt_path", last, "--data.predict_dir", str(images),
                   "--output_dir", str(tmp_path / "pred"), "--trainer.logger", "false", *small) == 0  # fmt: skip
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} <= {p.name for p in images.iterdir()}
    assert {p["category_id"] for p in predictions} <= {c["id"] for c in val["categories"]}
    assert all(len(p["bbox"]) == 4 and 0 <= p["score"] <= 1 for p in predictions)
    drawn = sorted(p.name for p in (tmp_path / "pred" / "drawn").iterdir())
    assert drawn == sorted(p.name for p in images.glob("val_*"))  # the unreadable one is left out
    assert (
        "broken.jpg" in vtk_log.text and "skipping an image that cannot be decoded" in vtk_log.text
    )
    # the checkpoint alone, from an empty folder and with no data anywhere: the same detections
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.setenv("VTK_DATA_DIR", str(empty / "no_data"))
    vtk_log.clear()
    assert run_vtk("predict", last, str(images), "--model.draw_score", "1.01", cwd=empty) == 0
    alone = json.loads((empty / "predictions" / "predictions.json").read_text())
    assert alone == predictions
    assert not (empty / "no_data").exists()
    # no score reaches 1.01: every drawn image is empty, and the log says why
    assert (
        "3 of 3 drawn images show no box: no detection on them scores 1.01 or more" in vtk_log.text
    )
    assert "draw lower ones with --model.draw_score" in vtk_log.text
    # the recipe form needs none of the recipe's training data either, and writes into the
    # checkpoint's run folder; options about training data are left out, by name
    assert run_vtk("predict", recipe, "--ckpt_path", last, "--data.predict_dir", images,
                   "--data.hflip", "0.3", *small, cwd=empty) == 0  # fmt: skip
    run = Path(last).parent.parent
    assert json.loads((run / "predictions" / "predictions.json").read_text()) == predictions
    assert "left out --data.hflip, --data.num_workers" not in vtk_log.text
    assert "left out --data.hflip" in vtk_log.text and not (empty / "no_data").exists()
    # vtk.load's predictor (the same fast path) finds the same detections
    import vtk

    streamed = list(vtk.load(last, device="cpu").predict_folder(images, num_workers=0,
                                                                progress=False))  # fmt: skip
    assert len(streamed) == 3
    for r in streamed:  # every detection, in the same order, with the same score (5 digits)
        mine = [p for p in predictions if p["file_name"] == Path(r["path"]).name]
        assert [p["category_id"] for p in mine] == r["category_ids"]
        assert [p["score"] for p in mine] == pytest.approx(r["scores"], abs=1e-4)

    # the checkpoint (3 classes) against a COCO set with 2 categories: one clean message
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(other / "images" / "a.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [4, 4, 20, 20],
                         "area": 400, "iscrowd": 0}],
        "categories": [{"id": 5, "name": "cell"}, {"id": 9, "name": "platelet"}],
    }  # fmt: skip
    (other / "ann.json").write_text(json.dumps(coco))
    foreign = vtk_process(
        "test", recipe, "--ckpt_path", last, "--trainer.logger", "false",
        "--data", "vtk.data.CocoDetectionDataModule",
        "--data.train_images", str(other / "images"), "--data.train_annotations", str(other / "ann.json"),
        "--data.val_annotations", str(other / "ann.json"),
        "--data.test_annotations", str(other / "ann.json"), *small,
    )  # fmt: skip
    assert foreign.returncode != 0
    assert "vtk: error:" in foreign.stderr and "num_classes=3, the data has 2" in foreign.stderr
    assert "Traceback" not in foreign.stderr


def _printed_config(run_vtk, capsys, recipe: str) -> dict:
    capsys.readouterr()
    assert run_vtk("fit", recipe, "--print_config") == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_a_recipe_without_logger_or_checkpoints_gets_vtks_defaults(run_vtk, capsys, tmp_path):
    """The run folder is runs/<recipe name>; the best checkpoint monitors the task's metric;
    --print_config shows them."""
    recipe = yaml.safe_load((ROOT / "recipes" / "demo_classification.yaml").read_text())
    assert "logger" not in recipe["trainer"] and "callbacks" not in recipe["trainer"]
    path = tmp_path / "my_cats_resnet18.yaml"
    path.write_text(yaml.safe_dump(recipe))
    config = _printed_config(run_vtk, capsys, str(path))
    logger = config["trainer"]["logger"]
    assert logger["class_path"].endswith("CSVLogger")
    assert (logger["init_args"]["save_dir"], logger["init_args"]["name"]) == (
        "runs",
        "my_cats_resnet18",
    )
    best, last = config["trainer"]["callbacks"]
    assert (best["init_args"]["monitor"], best["init_args"]["mode"]) == ("val/acc1", "max")
    assert last["init_args"]["filename"] == "last"
    seg = _printed_config(run_vtk, capsys, DEMO)
    assert seg["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/mIoU"
    assert seg["trainer"]["logger"]["init_args"]["name"] == DEMO


def test_a_recipes_own_logger_and_callbacks_replace_the_defaults(run_vtk, capsys, tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "demo_classification.yaml").read_text())
    recipe["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "tb"},
    }
    recipe["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.EarlyStopping",
         "init_args": {"monitor": "val/loss"}}
    ]  # fmt: skip
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(recipe))
    config = _printed_config(run_vtk, capsys, str(path))
    assert config["trainer"]["logger"]["class_path"].endswith("TensorBoardLogger")
    (callback,) = config["trainer"]["callbacks"]
    assert callback["class_path"].endswith("EarlyStopping")
    # the RFB Net VOC recipe keeps its own: it judges by AP50, VOC's metric
    rfb = _printed_config(run_vtk, capsys, "rfbnet300_vgg16_voc")
    assert rfb["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/AP50"


def test_lightnings_own_argument_checks_end_in_one_error_line(run_vtk) -> None:
    message = run_vtk(
        "fit", "demo_classification", "--trainer.limit_train_batches", "3",
        "--trainer.val_check_interval", "20", "--trainer.max_epochs", "1", "--data.image_size",
        "32", *QUIET,
    )  # fmt: skip
    assert isinstance(message, str) and message.startswith("vtk: error: `val_check_interval` (20)")
    assert "\n" not in message
    unknown = run_vtk("fitt", "demo_classification")
    assert isinstance(unknown, str) and "unknown subcommand 'fitt'" in unknown


def test_a_fit_that_stops_inside_its_first_epoch_still_validates(fit_demo, tmp_path) -> None:
    """max_steps 2 of a 50-step epoch: the run validates once at its end, so it leaves a val
    metric and a best checkpoint (Lightning alone would stop without either)."""
    fit_demo("demo_classification", steps=2)
    run = tmp_path / "runs" / "demo_classification" / "version_0"
    assert len(list(run.rglob("best-*.ckpt"))) == 1
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("val/acc1")
    assert any(row.split(",")[column] for row in rows)


@pytest.mark.parametrize("recipe", ["demo_classification", "demo_detection"])
def test_num_classes_for_data_that_reads_its_classes_is_one_line(run_vtk, recipe) -> None:
    message = run_vtk("fit", recipe, "--data.num_classes", "5")
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith("vtk: error: Demo") and "takes no num_classes" in message
    assert message.endswith("Leave --data.num_classes out.")
    message = run_vtk(
        "fit", recipe, "--data", "vtk.data.ImageFolderDataModule", "--data.num_classes=5"
    )
    assert (
        "ImageFolderDataModule takes no num_classes: it reads its classes from the class sub-folders"
        in message
    )


@pytest.mark.slow  # three vtk processes
def test_a_fresh_demo_fit_and_test_print_no_warning(vtk_process, tmp_path) -> None:
    """Every warning a run printed was one a user could not act on (worker count above the
    cores, modules in eval mode, callbacks of the checkpoint, a new run folder, Lightning's
    tips): a fresh demo fit, and a test of its checkpoint, print none."""
    fit = vtk_process("fit", "demo_classification", "--trainer.max_steps", "2",
                      "--trainer.enable_progress_bar", "false", "--data.num_workers", "4")  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-2000:]
    run = tmp_path / "runs" / "demo_classification" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    test = (
        "test",
        "demo_classification",
        "--ckpt_path",
        last,
        "--trainer.enable_progress_bar",
        "false",
    )
    tested = [vtk_process(*test) for _ in range(2)]
    for result in (fit, *tested):
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Warning" not in result.stderr and "Tip:" not in result.stderr, result.stderr
        assert ".py:" not in result.stderr, result.stderr  # Lightning's warnings: path:line:
    # the tests wrote into the checkpoint's run folder, one folder each, and said so
    assert (run / "test" / "metrics.csv").is_file() and (run / "test_2" / "metrics.csv").is_file()
    assert not (run.parent / "version_1").exists()
    assert (
        f"writing this test into the checkpoint's run folder: {run / 'test_2'}" in tested[1].stderr
    )
    assert (
        "vtk test evaluates the validation images (the demo sets have no test split)"
        in tested[0].stderr
    )


def test_a_yolo_export_trains_and_tests_without_conversion(run_vtk, tmp_path, capsys) -> None:
    """docs/detection.md's command on a Roboflow YOLO export (relative data.yaml path; offline:
    weights null, small images), then vtk test on its test: entry."""
    write_roboflow_yolo(tmp_path / "my_set")
    recipe = "finetune_fcos_resnet50_custom_coco"
    data = ("--data", "vtk.data.YOLODataModule", "--data.data_yaml", "my_set/data.yaml")
    small = ("--model.init_args.model.init_args.weights", "null", "--data.num_workers", "0",
             "--model.init_args.model.init_args.min_size", "64",
             "--model.init_args.model.init_args.max_size", "96", *QUIET[:4])  # fmt: skip
    assert run_vtk("fit", recipe, *data, "--trainer.max_steps", "2", *small) == 0
    last = tmp_path / "runs" / recipe / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert run_vtk("test", recipe, *data, "--ckpt_path", last, *small) == 0
    printed = capsys.readouterr().out
    assert "test/AP/cell" in printed and "test/AP/platelet" in printed


def test_multilabel_fit_then_predict_from_the_checkpoint(fit_demo, run_vtk, tmp_path) -> None:
    import csv

    ckpt = fit_demo(
        "demo_multilabel", "--data.image_size", "32", "--data.resize_size", "32", steps=2
    )
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((Path(os.environ["VTK_DATA_DIR"]) / "demo_detection" / "val").iterdir())[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    assert run_vtk("predict", ckpt, images, "--model.threshold", "0.01") == 0
    with open(tmp_path / "predictions" / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 4  # header + 3 images, each with every class above 0.01
    assert all(len(r) == 2 + 2 * 3 for r in rows[1:])


def test_a_fit_that_fails_before_training_leaves_no_run_folder(run_vtk, tmp_path) -> None:
    message = run_vtk("fit", "demo_segmentation", "--data.crop_size", "64",
                      "--data.batch_size", "100000", "--trainer.max_steps", "1")  # fmt: skip
    assert isinstance(message, str) and "fewer than batch_size=100000" in message
    assert not (tmp_path / "runs").exists()
    (tmp_path / "runs" / "demo_segmentation" / "version_0").mkdir(parents=True)  # a user's
    assert run_vtk("fit", "demo_segmentation", "--data.batch_size", "100000") != 0
    assert sorted(p.name for p in (tmp_path / "runs" / "demo_segmentation").iterdir()) == [
        "version_0"
    ]  # only what this fit made is removed


def test_a_torchvision_built_for_another_torch_is_refused_in_one_line(run_vtk, monkeypatch) -> None:
    import torch
    from torchvision import extension

    monkeypatch.setattr(extension, "_has_ops", lambda: False)  # as when its operators fail to load
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    message = run_vtk("fit", "demo_classification", "--trainer.max_steps", "1")
    assert isinstance(message, str) and message.count("\n") == 0, message
    assert message.startswith("vtk: error: torchvision ") and "torch 2.13.0+cpu" in message
    assert "pip install torch==2.13.0 torchvision==0.28.*" in message


def test_an_error_during_training_gets_a_line_of_its_own(tmp_path) -> None:
    """The progress bar draws its line with carriage returns and no newline: an error raised
    mid-epoch starts a new line instead of ending up after ``train/loss=...]``."""
    import subprocess

    from helpers import VTK

    fit = subprocess.run(  # one stream, as a terminal shows the bar (stdout) and errors (stderr)
        [VTK, "fit", "demo_classification", "--model.init_args.optimizer.init_args.lr", "1e12",
         "--data.image_size", "32", "--trainer.max_epochs", "1", "--data.num_workers", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    assert fit.returncode != 0
    assert "train/loss=" in fit.stdout  # the bar was drawn
    lines = fit.stdout.replace("\r", "\n").splitlines()
    assert any(ln.startswith("vtk: error: training stopped") for ln in lines), fit.stdout[-2000:]
    assert "]vtk: error" not in fit.stdout and "No seed found" not in fit.stdout


@pytest.mark.parametrize("sub", ["predict", "test"])
def test_predict_and_test_help_is_short_and_shows_the_checkpoint_form(run_vtk, capsys, sub):
    assert run_vtk(sub, "--help") == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) < 40 and f"usage: vtk {sub} CKPT" in text
    assert f"vtk {sub} RECIPE --help" in text
    for option in re.findall(r"^  (--[\w.]+)", text, flags=re.M):  # each one the recipe takes
        assert option.split(".")[0] in ("--output_dir", "--data", "--fast", "--model", "--trainer")
    assert run_vtk(sub, "demo_classification", "--help") == 0  # every option, as before
    assert len(capsys.readouterr().out.splitlines()) > 200


def test_a_fit_normalises_as_its_weights_and_test_as_its_checkpoint(
    run_vtk, vtk_log, tmp_path
) -> None:
    """Through the command: a timm backbone whose weights tag was trained on mean 0.5 / std 0.5
    (not ImageNet's) makes the data normalise so, and the checkpoint keeps it; vtk test of that
    checkpoint (pretrained weights not fetched again) normalises as the checkpoint says."""
    timm = pytest.importorskip("timm")
    from vtk.recipe import find_recipe

    name = "mobilenetv4_conv_small_050.e3000_r224_in1k"
    torch.save(timm.create_model(name).state_dict(), tmp_path / "w.pth")
    config = yaml.safe_load(find_recipe("demo_classification").read_text())
    config["model"]["init_args"]["model"]["init_args"]["backbone"] = {
        "class_path": "vtk.models.backbones.TimmBackbone",
        "init_args": {"name": name, "out_indices": [3], "weights": str(tmp_path / "w.pth")},
    }
    recipe = tmp_path / "timm_half.yaml"
    recipe.write_text(yaml.safe_dump(config))
    quick = ("--trainer.max_steps", 2, "--trainer.limit_val_batches", 1, *QUIET)
    assert run_vtk("fit", recipe, *quick) == 0
    assert "the data normalises as the backbone's weights: mean [0.5, 0.5, 0.5]" in vtk_log.text
    last = tmp_path / "runs" / "timm_half" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert saved["input_spec"]["mean"] == [0.5, 0.5, 0.5]
    vtk_log.clear()
    assert run_vtk("test", recipe, "--ckpt_path", last, "--trainer.limit_test_batches", 1,
                   *QUIET) == 0  # fmt: skip
    assert "the data normalises as the checkpoint: mean [0.5, 0.5, 0.5]" in vtk_log.text
