"""tools/voc_to_coco.py on VOC XML written here: coordinates, difficult objects, boxes with no
area, and several VOC folders into one file that CocoDetectionDataModule reads."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

from helpers import ROOT
from PIL import Image

from vtk.data import CocoDetectionDataModule


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
    return runpy.run_path(str(ROOT / "tools" / "voc_to_coco.py"), run_name="tool")["main"]


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
