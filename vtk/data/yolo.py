"""YOLO exports (ultralytics, Roboflow "YOLO") read as they are, as COCO-format detection data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vtk.data.detection import CocoDetectionDataModule
from vtk.errors import DataError

log = logging.getLogger("vtk")


class YOLODataModule(CocoDetectionDataModule):
    """A YOLO export (ultralytics, Roboflow "YOLO") read as it is: ``data.yaml`` with
    ``names`` and the split entries, images in ``.../images/``, one ``.txt`` per image in
    ``.../labels/`` (``class cx cy w h``, or a polygon: its bounding box). Trained and evaluated
    as COCO-format data (COCO mAP), with no conversion step; ``vtk convert yolo`` writes the same
    COCO JSON to a file.

    The split entries resolve as ultralytics resolves them: relative to ``path`` (itself
    relative to the YAML's folder) or to the YAML's folder; a ``../`` entry that does not exist
    there is tried without it (Roboflow's ``train: ../train/images``). Labels that cannot be
    used (a class outside ``names``, too few numbers, no area) are left out and counted in the
    log with their file and line; boxes reaching outside the image are clipped.

    Args:
        data_yaml: the export's ``data.yaml``.
        train_split, val_split: its entries for training and validation.
        test_split: its entry for ``vtk test``, used when the YAML has it (default ``test``);
            without one there is no test split (``vtk test`` stops and says so).
        **kwargs: see :class:`CocoDetectionDataModule` (augmentation, sampling, batch size).
    """

    test_option = "a test: entry in data.yaml (or --data.test_split NAME)"
    classes_from = "the names of data.yaml"

    def __init__(
        self,
        data_yaml: str,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = "test",
        **kwargs: Any,
    ) -> None:
        path = Path(data_yaml).expanduser()
        self.data_yaml = str(path)
        self._cache = {}
        # (one call of the parent's constructor with every argument named: jsonargparse reads
        # this method's source to know which parent arguments **kwargs stands for)
        folders: dict[str, str | None] = {"train": "", "val": None, "test": None}
        if kwargs.get("stream") is None:  # else the stream holds the classes and the samples
            folders = self._read_yaml(path, train_split, val_split, test_split, kwargs)
        super().__init__(
            train_images=folders["train"], train_annotations=f"{path}#train",
            val_annotations=f"{path}#val", val_images=folders["val"],
            test_images=folders["test"],
            test_annotations=f"{path}#test" if folders["test"] else None, **kwargs,
        )  # fmt: skip

    def _read_yaml(
        self,
        path: Path,
        train_split: str,
        val_split: str,
        test_split: str | None,
        kwargs: dict[str, Any],
    ) -> dict[str, str | None]:
        """Each role's image folder, with its labels converted into ``_cache`` as COCO."""
        import yaml

        from vtk.data.convert import yolo_to_coco

        if not path.is_file():
            raise DataError(f"{path} does not exist: give the export's data.yaml.")
        entries = yaml.safe_load(path.read_text()) or {}
        if test_split is not None and not entries.get(test_split):
            test_split = None
        folders: dict[str, str | None] = {}
        for role, split in (("train", train_split), ("val", val_split), ("test", test_split)):
            if role == "val" and not entries.get(split) and kwargs.get("val_fraction"):
                self._cache[f"{path}#val"] = self._cache[f"{path}#train"]  # carved from train
                folders["val"] = folders["train"]
                continue
            if split is None:
                folders[role] = None
                continue
            coco, problems, folder = yolo_to_coco(path, split)
            for line in problems[:5]:
                log.warning("%s", line)
            if len(problems) > 5:
                log.warning("... %d more label problems in the %s split", len(problems) - 5, split)
            log.info(
                "YOLO %s split (%s): %d images, %d boxes", split, folder,
                len(coco["images"]), len(coco["annotations"]),
            )  # fmt: skip
            self._cache[f"{path}#{role}"] = coco
            folders[role] = str(folder)
        return folders

    def test_source(self) -> str | None:
        return None if self.paths["test"][1] is None else ""
