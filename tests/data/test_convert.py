"""``vtk convert``: VOC XML (coordinates, difficult objects, boxes with no area, several folders
into one file), a YOLO export of the same boxes as a COCO file (the converted JSON equals it),
and a COCO file whose annotation ids start at 0 (what pycocotools makes of it; renumbered)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vtk.data import CocoDetectionDataModule
from vtk.data.convert import main as convert


def _voc(root: Path, images: dict[str, list[tuple[str, int, tuple[int, int, int, int]]]]) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for name, objects in images.items():
        Image.new("RGB", (64, 48)).save(root / "JPEGImages" / f"{name}.jpg")
        xml = "".join(
            f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for c, d, b in objects
        )
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{xml}</annotation>"
        )
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(images) + "\n")
    return root


def _main():
    return lambda argv: convert(["voc", *argv])


def test_one_folder_coordinates_difficult_and_empty_boxes(tmp_path, capsys) -> None:
    root = _voc(tmp_path / "VOC2007", {"a": [("dog", 0, (1, 1, 10, 20)), ("cat", 1, (5, 5, 9, 9)),
                                             ("cat", 0, (7, 7, 7, 12))]})  # fmt: skip
    out = tmp_path / "a.json"
    _main()([str(root), "--split", "trainval", "--out", str(out)])
    printed = capsys.readouterr()
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert coco["images"] == [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}]
    dog, cat = coco["annotations"]
    assert dog["bbox"] == [0, 0, 10, 20] and dog["category_id"] == 2  # 1-based VOC pixels
    assert cat["iscrowd"] == 1  # difficult: left out of the loss and of COCO's misses
    assert "has no area, left out" in printed.err
    assert f"image folder: {root / 'JPEGImages'}" in printed.out


def test_several_folders_into_one_file(tmp_path, capsys) -> None:
    devkit = tmp_path / "VOCdevkit"
    _voc(devkit / "VOC2007", {"000005": [("dog", 0, (1, 1, 10, 20))]})
    _voc(devkit / "VOC2012", {"2008_000002": [("cat", 0, (3, 3, 30, 30))]})
    out = tmp_path / "voc0712.json"
    _main()([str(devkit / "VOC2007"), str(devkit / "VOC2012"), "--split", "trainval",
             "--classes", "cat,dog", "--out", str(out)])  # fmt: skip
    assert f"image folder: {devkit.resolve()}" in capsys.readouterr().out
    coco = json.loads(out.read_text())
    assert [(i["id"], i["file_name"]) for i in coco["images"]] == [
        (1, "VOC2007/JPEGImages/000005.jpg"), (2, "VOC2012/JPEGImages/2008_000002.jpg")
    ]  # fmt: skip
    dm = CocoDetectionDataModule(str(devkit), str(out), str(out), num_workers=0)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 2 and dm.class_names == ["cat", "dog"]
    assert dm.datasets["train"][1]["target"]["labels"].tolist() == [0]


#: one COCO file: 3 images (one landscape, one portrait, one without objects), 2 classes
COCO_SIZES = {"a.jpg": (64, 48), "b.jpg": (40, 80), "c.jpg": (32, 32)}
COCO_BOXES = {"a.jpg": [(1, [4.0, 6.0, 20.0, 10.0]), (2, [30.0, 0.0, 34.0, 48.0])],
              "b.jpg": [(2, [0.0, 8.0, 16.0, 24.0])], "c.jpg": []}  # fmt: skip


def _coco_file(folder: Path, first_ann_id: int = 1) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for image_id, (name, (w, h)) in enumerate(COCO_SIZES.items(), start=1):
        Image.new("RGB", (w, h)).save(folder / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for cat, box in COCO_BOXES[name]:
            anns.append({"id": first_ann_id + len(anns), "image_id": image_id, "category_id": cat,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    cats = [{"id": 1, "name": "cell", "supercategory": "none"},
            {"id": 2, "name": "platelet", "supercategory": "none"}]  # fmt: skip
    return {"images": images, "annotations": anns, "categories": cats}


def _yolo_export(root: Path) -> Path:
    """The boxes of :func:`_coco_file` as ultralytics / Roboflow write them."""
    _coco_file(root / "images" / "train")
    (root / "labels" / "train").mkdir(parents=True)
    for name, (w, h) in COCO_SIZES.items():
        lines = [
            f"{cat - 1} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}"
            for cat, (x, y, bw, bh) in COCO_BOXES[name]
        ]
        if lines:  # an image without objects has no label file
            (root / "labels" / "train" / name).with_suffix(".txt").write_text("\n".join(lines))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: {0: cell, 1: platelet}\n")
    return root / "data.yaml"


def test_yolo_export_converts_to_the_same_coco_file(tmp_path, capsys) -> None:
    data_yaml = _yolo_export(tmp_path / "export")
    out = tmp_path / "train.json"
    convert(["yolo", str(data_yaml), "--split", "train", "--out", str(out)])
    assert f"image folder: {(tmp_path / 'export' / 'images' / 'train').resolve()}" in (
        capsys.readouterr().out
    )
    got, want = json.loads(out.read_text()), _coco_file(tmp_path / "again")
    assert got["categories"] == want["categories"]
    assert got["images"] == want["images"]
    assert len(got["annotations"]) == len(want["annotations"]) == 3
    for g, w in zip(got["annotations"], want["annotations"]):
        assert (g["id"], g["image_id"], g["category_id"], g["iscrowd"]) == (
            w["id"], w["image_id"], w["category_id"], w["iscrowd"]
        )  # fmt: skip
        np.testing.assert_allclose(g["bbox"], w["bbox"], atol=1e-3)  # 6 decimals in the txt
    dm = CocoDetectionDataModule(str(tmp_path / "export" / "images" / "train"), str(out), str(out),
                                 num_workers=0)  # fmt: skip
    dm.setup("fit")
    assert dm.class_names == ["cell", "platelet"] and len(dm.datasets["train"]) == 3


def test_yolo_problems_are_reported_by_file_and_line(tmp_path, capsys) -> None:
    data_yaml = _yolo_export(tmp_path / "export")
    labels = tmp_path / "export" / "labels" / "train" / "a.txt"
    labels.write_text(
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "5 0.5 0.5 0.2 0.2\n"  # no such class
        "1 0.5 0.5 0.0 0.3\n"  # no area
        "0 0.95 0.5 0.2 0.2\n"  # reaches outside: clipped
        "1 0.1 0.1 0.3 0.1 0.3 0.4\n"  # a polygon: its bounding box
        "0 0.5 0.5\n"  # too few numbers
    )
    out = tmp_path / "train.json"
    convert(["yolo", str(data_yaml), "--out", str(out)])
    err = capsys.readouterr().err
    assert f"{labels}:2: class 5 is not among the 2 names" in err
    assert f"{labels}:3: platelet box has no area, left out" in err
    assert f"{labels}:4: box reaches outside the image, clipped" in err
    assert f"{labels}:6: 2 numbers after the class" in err
    boxes = [a["bbox"] for a in json.loads(out.read_text())["annotations"] if a["image_id"] == 1]
    np.testing.assert_allclose(boxes[1], [54.4, 19.2, 9.6, 9.6], atol=1e-4)  # clipped at 64
    np.testing.assert_allclose(boxes[2], [6.4, 4.8, 12.8, 14.4], atol=1e-4)  # the polygon's box


def test_yolo_without_names_or_split_is_a_clear_error(tmp_path) -> None:
    data_yaml = _yolo_export(tmp_path / "export")
    with pytest.raises(SystemExit, match=r"has no 'val' entry; its splits: \['train'\]"):
        convert(["yolo", str(data_yaml), "--split", "val", "--out", str(tmp_path / "v.json")])
    data_yaml.write_text("train: images/train\n")
    with pytest.raises(SystemExit, match="has no 'names'"):
        convert(["yolo", str(data_yaml), "--out", str(tmp_path / "t.json")])


def _cocoeval_ap(gt: dict, folder: Path) -> tuple[float, float]:
    """pycocotools' COCOeval with the ground truth fed back as detections: (AP, AP50)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = folder / "gt.json"
    path.write_text(json.dumps(gt))
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 0.9} for a in gt["annotations"]]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def test_annotation_id_0_is_reported_and_renumbered(tmp_path, vtk_log, capsys, run_vtk) -> None:
    raw = _coco_file(tmp_path / "images", first_ann_id=0)  # as Roboflow's exports number them
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    # what a user's own COCOeval makes of it: the box with id 0 is never found
    ap, ap50 = _cocoeval_ap(raw, tmp_path)
    assert ap < 1.0 and ap50 < 1.0
    CocoDetectionDataModule(str(tmp_path / "images"), str(path), str(path))
    assert "annotation ids start at 0" in vtk_log.text and "vtk convert coco" in vtk_log.text
    fixed = tmp_path / "fixed.json"
    assert run_vtk("convert", "coco", path, "--out", fixed) == 0  # the command, as a user runs it
    assert "annotation ids started at 0: renumbered from 1" in capsys.readouterr().err
    renumbered = json.loads(fixed.read_text())
    assert [a["id"] for a in renumbered["annotations"]] == [1, 2, 3]
    assert [a["bbox"] for a in renumbered["annotations"]] == [a["bbox"] for a in raw["annotations"]]
    assert _cocoeval_ap(renumbered, tmp_path) == (1.0, 1.0)


def test_repeated_image_ids_are_an_error(tmp_path) -> None:
    raw = _coco_file(tmp_path / "images")
    raw["images"][2]["id"] = 1
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(Exception, match="image id 1 is given to more than one image"):
        CocoDetectionDataModule(str(tmp_path / "images"), str(path), str(path))


def _raccoon(root: Path, n: int = 10) -> Path:
    """datitran/raccoon_dataset's layout: ``annotations/raccoon-K.xml`` beside
    ``images/raccoon-K.jpg`` (lower-case folders, no ImageSets), ``<filename>`` as labelImg wrote
    it (one says .png for a .jpg), and ``data/raccoon_labels.csv`` (one row per box)."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "data").mkdir()
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for k in range(1, n + 1):
        Image.new("RGB", (64, 48)).save(root / "images" / f"raccoon-{k}.jpg")
        written = f"raccoon-{k}.png" if k == 3 else f"raccoon-{k}.jpg"
        (root / "annotations" / f"raccoon-{k}.xml").write_text(
            f"<annotation><folder>images</folder><filename>{written}</filename>"
            f"<path>/Users/someone/raccoon/images/{written}</path><size><width>64</width>"
            "<height>48</height><depth>3</depth></size><object><name>raccoon</name>"
            "<difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>30</xmax>"
            "<ymax>40</ymax></bndbox></object></annotation>"
        )
        rows += [f"raccoon-{k}.jpg,64,48,raccoon,2,3,30,40"] * (2 if k % 2 else 1)
    (root / "data" / "raccoon_labels.csv").write_text("\n".join(rows[:5]) + "\n")
    return root


def test_the_raccoon_layout_with_a_seeded_fraction(tmp_path, capsys) -> None:
    root = _raccoon(tmp_path / "raccoon_dataset")
    out = tmp_path / "coco"
    args = ["--annotations", str(root / "annotations"), "--images", str(root / "images"),
            "--val_fraction", "0.2", "--out", str(out)]  # fmt: skip
    _main()(args)
    printed = capsys.readouterr()
    train, val = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    names = [{i["file_name"] for i in c["images"]} for c in (train, val)]
    assert len(names[0]) == 8 and len(names[1]) == 2 and not names[0] & names[1]
    assert "raccoon-3.jpg" in names[0] | names[1]  # its XML said .png: matched and said so
    assert "raccoon-3.xml: <filename> 'raccoon-3.png' is not in" in printed.err
    assert (
        train["categories"]
        == val["categories"]
        == [{"id": 1, "name": "raccoon", "supercategory": "none"}]
    )
    assert f"image folder: {root / 'images'}" in printed.out and "2 val" in printed.out
    _main()([*args[:-1], str(tmp_path / "again")])  # seeded: the same split again
    assert (tmp_path / "again" / "val.json").read_text() == (out / "val.json").read_text()
    # the DataModule reads what was written
    dm = CocoDetectionDataModule(str(root / "images"), str(out / "train.json"),
                                 str(out / "val.json"), num_workers=0)  # fmt: skip
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 8 and dm.class_names == ["raccoon"]


def test_split_lists_as_csv_or_txt_and_folder_names_in_any_case(tmp_path, capsys) -> None:
    root = _raccoon(tmp_path / "raccoon_dataset")
    out = tmp_path / "listed.json"
    _main()(["--annotations", str(root / "annotations"), "--images", str(root / "images"),
             "--split", str(root / "data" / "raccoon_labels.csv"), "--out", str(out)])  # fmt: skip
    coco = json.loads(out.read_text())
    # the CSV's rows name raccoon-1 (twice), -2, -3: each once, in order
    assert [i["file_name"] for i in coco["images"]] == [
        "raccoon-1.jpg", "raccoon-2.jpg", "raccoon-3.jpg"
    ]  # fmt: skip
    listing = tmp_path / "val.txt"
    listing.write_text("raccoon-4\nraccoon-5.jpg\n")
    _main()(["--annotations", str(root / "annotations"), "--images", str(root / "images"),
             "--split", str(listing), "--out", str(out)])  # fmt: skip
    assert len(json.loads(out.read_text())["images"]) == 2
    # a VOC folder whose sub-folders are lower case converts as VOC
    voc = _voc(tmp_path / "VOC", {"a": [("dog", 0, (1, 1, 10, 20))]})
    for name in ("Annotations", "JPEGImages"):
        (voc / name).rename(voc / name.lower())
    _main()([str(voc), "--out", str(out)])
    assert json.loads(out.read_text())["images"][0]["file_name"] == "a.jpg"
    assert f"image folder: {voc / 'jpegimages'}" in capsys.readouterr().out


def test_bad_split_lists_and_fractions_are_one_line(tmp_path) -> None:
    root = _raccoon(tmp_path / "raccoon_dataset")
    base = ["--annotations", str(root / "annotations"), "--images", str(root / "images")]
    listing = tmp_path / "list.txt"
    listing.write_text("raccoon-1\nraccoon-99\n")
    cases = [
        ([*base, "--split", str(listing), "--out", str(tmp_path / "a.json")],
         f"{listing}: 1 of its 2 entries have no XML in {root / 'annotations'} (first: 'raccoon-99')"),
        ([*base, "--val_fraction", "0.2", "--out", str(tmp_path / "a.json")],
         "with --val_fraction / --test_fraction, --out is a folder"),
        ([*base, "--val_fraction", "1.5", "--out", str(tmp_path / "o")],
         "--val_fraction is a fraction in (0, 1), got 1.5"),
        ([*base, "--val_fraction", "0.01", "--out", str(tmp_path / "o")],
         "val_fraction=0.01 of 10 images is no image; raise it"),
        (["--annotations", str(root / "nope"), "--images", str(root / "images"),
          "--out", str(tmp_path / "a.json")], f"{root / 'nope'} (--annotations) is not a folder"),
        (["--out", str(tmp_path / "a.json")], "give VOC folder(s), or --annotations DIR"),
    ]  # fmt: skip
    for argv, expected in cases:
        with pytest.raises(SystemExit) as e:
            _main()(argv)
        assert str(e.value).startswith("vtk: error:") and expected in str(e.value), str(e.value)


def test_convert_help_has_no_markup(capsys) -> None:
    with pytest.raises(SystemExit):
        convert(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text and "**" not in text
    assert "--annotations raccoon/annotations --images raccoon/images" in text
