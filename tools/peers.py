"""vtk beside the tool a user would pick instead: ultralytics YOLO, on the same detection work,
the same CPU and the same minutes, both from scratch, scored by one evaluator.

    python tools/peers.py bccd --root path/to/BCCD --minutes 45 --out peers_bccd \\
        --yolo_python path/to/python-with-ultralytics
    python tools/peers.py bccd --root path/to/BCCD --out peers_bccd --only score  # re-score

BCCD (Pascal VOC XML: 205 train / 87 val / 72 test images) is converted once to COCO JSON (the
ground truth both are scored on) and to a YOLO dataset (the same boxes) for ultralytics. Then,
one after the other:

* ultralytics: ``YOLO(<model>.yaml).train(..., pretrained=False, time=minutes / 60)``: its
  own default augmentation and schedule fitted to the time, on the CPU, keeping its best
  checkpoint on validation;
* vtk: ``vtk fit <recipe> --time_budget minutes`` (the epochs and the LR schedule fitted to
  the time, :mod:`vtk.budget`), keeping the best validation AP.

Both best checkpoints then predict the test images one at a time (score threshold 0.001, at
most 100 detections, their own NMS), timed from the image file to the boxes, and pycocotools'
COCOeval scores both result files against the one ground-truth file: AP, AP50, AP75, APs, APm,
APl and per-class AP. ``results.json`` and ``table.md`` in ``--out`` hold the table.

ultralytics is AGPL-3.0: vtk never imports it. It runs in its own process, in the Python given
by ``--yolo_python`` (default this one), where ``pip install ultralytics`` (vtk's ``peers``
extra) put it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: BCCD's classes, in the order of their ids in every converted file
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]
SCORE_THRESH = 0.001
MAX_DETS = 100


# -- data ---------------------------------------------------------------------------------------
def prepare_bccd(root: Path, out: Path) -> dict[str, Path]:
    """COCO JSON per split (``out/coco/<split>.json``) and a YOLO dataset (``out/yolo``: images
    linked, labels written from the same boxes, ``data.yaml``)."""
    from vtk.data.convert import voc_image_folder, voc_to_coco

    images = voc_image_folder([root])
    files: dict[str, Path] = {"images": images}
    for split in ("train", "val", "test"):
        coco, _ = voc_to_coco(root, split, BCCD_CLASSES)
        path = out / "coco" / f"{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(coco))
        files[split] = path
        write_yolo_split(coco, images, out / "yolo" / split)
    data_yaml = out / "yolo" / "data.yaml"
    data_yaml.write_text(
        f"path: {(out / 'yolo').resolve()}\ntrain: train/images\nval: val/images\n"
        f"test: test/images\nnames: {json.dumps(BCCD_CLASSES)}\n"
    )
    files["data_yaml"] = data_yaml
    return files


def yolo_lines(coco: dict[str, Any], image: dict[str, Any]) -> list[str]:
    """An image's boxes as YOLO label lines (class index, centre and size over the image's
    width and height); crowd boxes are left out, as YOLO has no such flag."""
    index = {c["id"]: k for k, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    w, h = image["width"], image["height"]
    lines = []
    for a in coco["annotations"]:
        if a["image_id"] != image["id"] or a.get("iscrowd"):
            continue
        x, y, bw, bh = a["bbox"]
        lines.append(
            f"{index[a['category_id']]} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} "
            f"{bw / w:.6f} {bh / h:.6f}"
        )
    return lines


def write_yolo_split(coco: dict[str, Any], images: Path, out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for image in coco["images"]:
        link = out / "images" / Path(image["file_name"]).name
        if not link.exists():
            link.symlink_to((images / image["file_name"]).resolve())
        (out / "labels" / f"{link.stem}.txt").write_text("\n".join(yolo_lines(coco, image)))


# -- scoring ------------------------------------------------------------------------------------
def coco_scores(ground_truth: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """pycocotools' COCOeval of ``results`` (COCO result dicts) against ``ground_truth``: AP,
    AP50, AP75, APs, APm, APl (percent) and AP per class name."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ground_truth))
        dt = gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.maxDets = [1, 10, MAX_DETS]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    scores: dict[str, Any] = {n: round(100 * float(stats[i]), 1) for i, n in enumerate(names)}
    precision = evaluator.eval["precision"]  # (IoU, recall, class, area, max dets)
    per_class = {}
    for k, cat in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_class[gt.cats[cat]["name"]] = (
            round(100 * float(p[p > -1].mean()), 1) if (p > -1).any() else None
        )
    scores["per_class"] = per_class
    return scores


# -- ultralytics, in its own process ------------------------------------------------------------
YOLO_TRAIN = """
import json, sys, time
from ultralytics import YOLO
a = json.loads(sys.argv[1])
start = time.time()
YOLO(a["model"]).train(data=a["data"], time=a["hours"], imgsz=a["imgsz"], device="cpu",
                       pretrained=False, project=a["project"], name="yolo", exist_ok=True,
                       plots=False, seed=0, verbose=False)
print("TRAIN_SECONDS", time.time() - start)
"""

YOLO_PREDICT = """
import json, sys, time, torch
from ultralytics import YOLO
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
model = YOLO(a["weights"])
names = model.names
out, times = [], []
for k, (path, image_id) in enumerate(a["images"]):
    start = time.perf_counter()
    (r,) = model.predict(path, conf=a["conf"], max_det=a["max_det"], imgsz=a["imgsz"],
                         device="cpu", verbose=False)
    boxes = r.boxes.xyxy.tolist(); scores = r.boxes.conf.tolist(); classes = r.boxes.cls.tolist()
    elapsed = time.perf_counter() - start
    if k >= a["warmup"]:
        times.append(elapsed)
    for (x1, y1, x2, y2), s, c in zip(boxes, scores, classes):
        out.append({"image_id": image_id, "category_id": a["category_ids"][int(c)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
json.dump({"results": out, "ms_per_image": 1000 * sum(times) / max(1, len(times))},
          open(a["out"], "w"))
"""


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> float:
    """Run ``cmd`` with its output in ``log``; the wall-clock seconds it took."""
    start = time.monotonic()
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=_env())
    if done.returncode != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({done.returncode}); see {log}:\n{tail}")
    return time.monotonic() - start


def _env() -> dict[str, str]:
    return {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "YOLO_OFFLINE": "1"}


def train_yolo(files: dict[str, Path], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = {"model": args.yolo_model, "data": str(files["data_yaml"]), "hours": args.minutes / 60,
            "imgsz": args.imgsz, "project": str(out.resolve())}  # fmt: skip
    seconds = _run([args.yolo_python, "-c", YOLO_TRAIN, json.dumps(spec)], out / "yolo_train.log")
    rows = (out / "yolo" / "results.csv").read_text().strip().splitlines()[1:]
    return {"wall_minutes": round(seconds / 60, 1), "epochs": len(rows)}


def score_yolo(files: dict[str, Path], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    images, category_ids = _test_images(files)
    spec = {"weights": str(out / "yolo" / "weights" / "best.pt"), "images": images,
            "category_ids": category_ids, "conf": SCORE_THRESH, "max_det": MAX_DETS,
            "imgsz": args.imgsz, "threads": args.threads, "warmup": 3,
            "out": str(out / "yolo_test_results.json")}  # fmt: skip
    _run([args.yolo_python, "-c", YOLO_PREDICT, json.dumps(spec)], out / "yolo_predict.log")
    return json.loads((out / "yolo_test_results.json").read_text())


def yolo_version(python: str) -> str:
    code = "import ultralytics; print(ultralytics.__version__)"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=_env())
    return done.stdout.strip() or "not installed"


# -- vtk ----------------------------------------------------------------------------------------
def _vtk_data_args(files: dict[str, Path]) -> list[str]:
    return ["--data.train_images", str(files["images"]), "--data.train_annotations",
            str(files["train"]), "--data.val_annotations", str(files["val"]),
            "--data.test_annotations", str(files["test"])]  # fmt: skip


def train_vtk(files: dict[str, Path], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    vtk = str(Path(sys.executable).with_name("vtk"))
    cmd = [vtk, "fit", args.recipe, "--time_budget", str(args.minutes), *_vtk_data_args(files),
           "--trainer.enable_progress_bar", "false", *args.vtk_args]  # fmt: skip
    (out / "vtk").mkdir(parents=True, exist_ok=True)
    seconds = _run(cmd, out / "vtk_train.log", cwd=out / "vtk")
    return {"wall_minutes": round(seconds / 60, 1)}


def _vtk_run(out: Path) -> Path:
    runs = sorted((out / "vtk" / "runs").glob("*/version_*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no vtk run in {out / 'vtk' / 'runs'}: train it first (--only vtk).")
    return runs[-1]


def score_vtk(files: dict[str, Path], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import vtk

    torch.set_num_threads(args.threads)
    folder = _vtk_run(out) / "checkpoints"
    found = sorted(folder.glob("best*.ckpt"))  # none when the budget ended before a validation
    best = found[-1] if found else folder / "last.ckpt"
    model = vtk.load(best, device="cpu")
    detector = model.task.model
    detector.score_thresh, detector.detections_per_img = SCORE_THRESH, MAX_DETS
    images, _ = _test_images(files)
    results, times = [], []
    for k, (path, image_id) in enumerate(images):
        start = time.perf_counter()
        found = model.predict(path)
        if k >= 3:
            times.append(time.perf_counter() - start)
        for box, category, score in zip(found["boxes"], found["category_ids"], found["scores"]):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": image_id, "category_id": int(category),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})  # fmt: skip
    return {"results": results, "ms_per_image": 1000 * sum(times) / max(1, len(times)),
            "checkpoint": str(best)}  # fmt: skip


def vtk_images_seen(out: Path) -> tuple[int, int]:
    """(epochs, training images seen) of the vtk run, from its last checkpoint and config."""
    import torch
    import yaml

    run = _vtk_run(out)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    batch = yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["batch_size"]
    return int(last["epoch"]) + 1, int(last["global_step"]) * int(batch)


def _test_images(files: dict[str, Path]) -> tuple[list[tuple[str, int]], list[int]]:
    coco = json.loads(files["test"].read_text())
    images = [(str(files["images"] / i["file_name"]), i["id"]) for i in coco["images"]]
    return images, [c["id"] for c in sorted(coco["categories"], key=lambda c: c["id"])]


# -- the report ---------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    field = {ln.split(":")[0].strip(): ln.split(":", 1)[1].strip() for ln in info if ":" in ln}
    return f"{field.get('model name', '?')} (cpu family {field.get('cpu family', '?')}), {os.cpu_count()} cores"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| tool | model | minutes | epochs | images seen | AP | AP50 | AP75 | APs | APm | APl "
            "| " + " | ".join(f"AP {c}" for c in BCCD_CLASSES) + " | ms / image |")  # fmt: skip
    lines = [head, "|" + " --- |" * (12 + len(BCCD_CLASSES))]
    for r in rows:
        s = r["test"]
        lines.append(
            f"| {r['tool']} {r['version']} | {r['model']} | {r['wall_minutes']} | {r['epochs']} "
            f"| {r['images_seen']} | {s['AP']} | {s['AP50']} | {s['AP75']} | {s['APs']} | "
            f"{s['APm']} | {s['APl']} | "
            + " | ".join(str(s["per_class"].get(c)) for c in BCCD_CLASSES)
            + f" | {r['ms_per_image']:.0f} |"
        )
    return "\n".join(lines)


def draw_curves(out: Path, n_train: int) -> Path:
    """``curves.png`` in ``out``: each tool's validation AP and AP50 against the training images
    it had seen (ultralytics: its own mAP on val after each epoch; vtk: the COCO AP of its
    validations), so the two runs' progress reads on one axis."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    with open(out / "yolo" / "results.csv") as f:
        yolo = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    run = _vtk_run(out)
    batch = yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["batch_size"]
    with open(run / "metrics.csv") as f:
        ours = [row for row in csv.DictReader(f) if row.get("val/AP")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = [("metrics/mAP50-95(B)", "val/AP", "AP (IoU 0.5:0.95)"),
              ("metrics/mAP50(B)", "val/AP50", "AP50")]  # fmt: skip
    for ax, (theirs, mine, title) in zip(axes, panels):
        ax.plot([int(r["epoch"]) * n_train for r in yolo], [100 * float(r[theirs]) for r in yolo],
                "o-", ms=3, label="ultralytics YOLO11n")  # fmt: skip
        ax.plot([(int(r["step"]) + 1) * int(batch) for r in ours],
                [100 * float(r[mine]) for r in ours], "s-", ms=3, label="vtk FCOS R-10")  # fmt: skip
        ax.set(xlabel="training images seen", ylabel=f"validation {title}", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("dataset", choices=["bccd"])
    parser.add_argument("--root", type=Path, required=True, help="the BCCD folder (VOC layout)")
    parser.add_argument("--out", type=Path, required=True, help="where the runs and report go")
    parser.add_argument("--minutes", type=float, default=45.0, help="training time of each tool")
    parser.add_argument("--only", choices=["yolo", "vtk", "score"], help="one part only")
    parser.add_argument("--yolo_python", default=sys.executable,
                        help="a Python with ultralytics installed (its own environment)")  # fmt: skip
    parser.add_argument("--yolo_model", default="yolo11n.yaml")
    parser.add_argument("--imgsz", type=int, default=640, help="YOLO's image size (BCCD: 640x480)")
    parser.add_argument("--recipe", default="fcos_resnet10_fpn_bccd_scratch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads for the timed predictions")  # fmt: skip
    parser.add_argument("vtk_args", nargs="*", help="more vtk fit arguments (after --)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    files = prepare_bccd(args.root, out / "data")
    report = out / "results.json"
    state = json.loads(report.read_text()) if report.is_file() else {}
    if args.only in (None, "yolo"):
        state["yolo_train"] = train_yolo(files, out, args)
    if args.only in (None, "vtk"):
        state["vtk_train"] = train_vtk(files, out, args)
    yolo = score_yolo(files, out, args)
    ours = score_vtk(files, out, args)
    epochs, seen = vtk_images_seen(out)
    n_train = len(json.loads(files["train"].read_text())["images"])
    import vtk as vtk_package

    rows = [
        {"tool": "ultralytics", "version": yolo_version(args.yolo_python),
         "model": args.yolo_model.removesuffix(".yaml"), **state.get("yolo_train", {}),
         "images_seen": state.get("yolo_train", {}).get("epochs", 0) * n_train,
         "test": coco_scores(files["test"], yolo["results"]), "ms_per_image": yolo["ms_per_image"]},
        {"tool": "vtk", "version": vtk_package.__version__, "model": args.recipe,
         **state.get("vtk_train", {}), "epochs": epochs, "images_seen": seen,
         "test": coco_scores(files["test"], ours["results"]), "ms_per_image": ours["ms_per_image"]},
    ]  # fmt: skip
    state.update(cpu=cpu_name(), minutes=args.minutes, test_images=len(_test_images(files)[0]),
                 score_thresh=SCORE_THRESH, max_dets=MAX_DETS, rows=rows)  # fmt: skip
    report.write_text(json.dumps(state, indent=1))
    text = table(rows)
    (out / "table.md").write_text(text + "\n")
    draw_curves(out, n_train)
    print(f"{state['cpu']}; {args.minutes:g} min each; {state['test_images']} test images\n{text}")


if __name__ == "__main__":
    main()
