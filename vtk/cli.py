"""The ``vtk`` command: Lightning's CLI, driven by YAML recipes.

    vtk fit demo_segmentation                                   # an installed recipe, by name
    vtk fit recipes/deeplab_resnet101_aspp.yaml --trainer.devices 8 --data.batch_size 2
    vtk test demo_segmentation --ckpt_path runs/.../checkpoints/last.ckpt
    vtk predict runs/.../checkpoints/last.ckpt my_images/   # the checkpoint alone: no recipe, no data
    vtk fit demo_segmentation --print_config
    vtk list                       # backbones, plug-ins, necks, heads, tasks, data, recipes
    vtk analyze resnet50_imagenet  # per stage: stride, channels, parameters, MACs, receptive field
    vtk convert yolo data.yaml --split train --out train.json   # VOC XML, YOLO txt -> COCO JSON
    vtk export runs/.../last.ckpt --format onnx --out model.onnx  # folded, preprocessing inside
    vtk optimize demo_segmentation --out stream/  # LitData chunks: vtk fit ... --data.stream stream/

A recipe after the subcommand (a path, or the name of a recipe installed with vtk) means
``--config RECIPE``; any key can be overridden on the command line. What the data says once
(``num_classes``, ``class_names``, ``category_ids``, ``input_spec``) is linked to the task
(:func:`vtk.recipe.link_data_to_task`).
"""

from __future__ import annotations

import logging
import sys

from vtk import __version__
from vtk.argv import config_value, option_value
from vtk.errors import VTKError
from vtk.recipe import find_recipe, installed_recipes, is_file, recipes_dir

SUBCOMMANDS = ("fit", "validate", "test", "predict")

#: ``vtk --help``: every subcommand, one line each
HELP = f"""usage: vtk SUBCOMMAND [RECIPE] [--key value ...]

vtk {__version__}: train, evaluate, predict and export vision models from YAML recipes.

subcommands:
  fit RECIPE          train (a recipe's path or installed name; any key overridable)
  validate RECIPE     evaluate on the validation split (--ckpt_path CKPT)
  test RECIPE         evaluate on the test split, write the confusion matrix (--ckpt_path CKPT)
  predict CKPT DIR    predict a folder of images from a checkpoint alone (or RECIPE --ckpt_path)
  list [weights]      backbones, plug-ins, models, necks, heads, tasks, data, recipes; the
                      trained weights vtk ships (a name goes wherever a checkpoint does)
  analyze RECIPE      per stage: stride, channels, parameters, MACs, receptive field
  convert FORMAT ...  VOC XML, YOLO txt or COCO JSON -> COCO JSON (vtk convert --help)
  optimize RECIPE     write the recipe's data as LitData chunks to stream (--out DIR or
                      s3://bucket/prefix; then vtk fit RECIPE --data.stream DIR_OR_URL)
  export CKPT         ONNX with the preprocessing and class names inside (vtk export --help)
  serve MODEL         a checkpoint or ONNX model behind HTTP, with a page (vtk serve --help)

options:
  -h, --help          this message (vtk SUBCOMMAND --help: the subcommand's options)
  --version           vtk's version

Documentation: docs/index.md (the site: mkdocs serve)."""


def rewrite_recipe_argv(argv: list[str]) -> None:
    """``vtk fit RECIPE ...`` -> ``vtk fit --config PATH ...``, in place, where RECIPE is a path
    or an installed recipe's name (``--config NAME`` is resolved the same way).

    Done on ``sys.argv`` itself because Lightning's DDP launcher starts the other ranks with
    the same command line; applied twice it changes nothing (the path then follows --config).
    """
    if len(argv) < 3 or argv[1] not in SUBCOMMANDS:
        return
    _resolve_weights_names(argv)
    if argv[1] == "predict" and argv[2].endswith(".ckpt"):
        from vtk.runner import checkpoint_only_predict  # reads the checkpoint: torch

        checkpoint_only_predict(argv)
        return
    if argv[1] in ("test", "validate") and argv[2].endswith(".ckpt") and is_file(argv[2]):
        from vtk.runner import checkpoint_only_evaluate

        checkpoint_only_evaluate(argv)
        return
    if not argv[2].startswith("-"):
        argv.insert(2, "--config")
    for i, arg in enumerate(argv[:-1]):
        value = argv[i + 1]
        if arg == "--config" and "\n" not in value and not is_file(value):  # not YAML text
            argv[i + 1] = str(find_recipe(value))
    recipe = config_value(argv)
    if argv[1] == "predict" and recipe and is_file(recipe) and _predicts_a_vtk_checkpoint(argv):
        from vtk.runner import checkpoint_only_predict

        checkpoint_only_predict(argv, recipe)  # the recipe's training data is not needed


def _resolve_weights_names(argv: list[str]) -> None:
    """The name of weights vtk ships, where a checkpoint goes (``vtk predict NAME DIR``,
    ``--ckpt_path NAME``), becomes the checkpoint :mod:`vtk.zoo` materialises for it."""
    from vtk import zoo

    if argv[1] == "predict" and zoo.is_weights_name(argv[2]):
        argv[2] = zoo.resolve(argv[2])
    for i, arg in enumerate(argv):
        if arg == "--ckpt_path" and i + 1 < len(argv) and zoo.is_weights_name(argv[i + 1]):
            argv[i + 1] = zoo.resolve(argv[i + 1])
        elif arg.startswith("--ckpt_path=") and zoo.is_weights_name(arg.split("=", 1)[1]):
            argv[i] = "--ckpt_path=" + zoo.resolve(arg.split("=", 1)[1])


def _predicts_a_vtk_checkpoint(argv: list[str]) -> bool:
    """Whether ``--ckpt_path`` names a checkpoint that ``vtk fit`` wrote (it carries the task's
    config, so prediction needs nothing from the recipe's data)."""
    path = option_value(argv, "--ckpt_path")
    if path is None or not is_file(path):
        return False
    from vtk.checkpoint import recipe_hyperparameters

    try:
        recipe_hyperparameters(path, "")
    except VTKError:
        return False
    return True


def _setup_logging() -> None:
    """The command prints vtk's messages as ``vtk: ...`` on stderr. The library only logs (to
    ``logging.getLogger("vtk")``); records still propagate to the root logger's handlers."""
    logger = logging.getLogger("vtk")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("vtk: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def list_components() -> str:
    """What ``vtk list`` prints, read from the package's source (:mod:`vtk.catalog`)."""
    from vtk.catalog import list_components as catalog
    from vtk.zoo import entries

    names = ", ".join(entries()) or "(none)"
    return (
        catalog(installed_recipes(), recipes_dir())
        + f"\nWeights (vtk list weights: metrics, recipe, SHA-256): {names}"
    )


def check_torch_pair() -> None:
    """Refuse, in one line, a torchvision built for another torch than the one installed: its
    C++ operators (``torchvision::nms``, ``deform_conv2d``) do not load and the first detector
    step would die deep in a traceback."""
    import torch
    import torchvision
    from torchvision import extension

    if extension._has_ops():
        return
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    match = f"0.{minor + 15}" if major == 2 else "the release paired with it"
    raise SystemExit(
        f"vtk: error: torchvision {torchvision.__version__} was built for another torch than "
        f"the installed torch {torch.__version__}: its operators (torchvision::nms) do not load. "
        f"Install a matching pair from one index, e.g. pip install torch=={torch.__version__.split('+')[0]} "
        f"torchvision=={match}.* (torch 2.N pairs with torchvision 0.N+15)"
    )


#: ``vtk predict --help`` / ``vtk test --help`` alone: the forms and the options used most (every
#: option of a recipe: ``vtk predict RECIPE --help``)
SHORT_HELP = {
    "predict": """usage: vtk predict CKPT DIR [options]              a checkpoint alone: no recipe, no data
       vtk predict NAME DIR [options]              weights vtk ships (vtk list weights)
       vtk predict RECIPE --ckpt_path CKPT --data.predict_dir DIR [options]

Predicts every image of DIR (sub-folders too) with the checkpoint's classes and input spec, and
writes the results beside the run (runs/<recipe>/version_N/predictions/) or into ./predictions/:
a PNG label map per image (segmentation), a COCO-style JSON (detection) or predictions.csv
(classification), with drawn copies in drawn/.

options used most:
  --output_dir OUT            where the results go
  --data.batch_size N         images per step
  --data.num_workers N        loader processes
  --fast false                the plain Lightning loop instead of the fast path
  --model.draw_score S        detection: the score from which boxes are drawn
  --trainer.accelerator cuda  on a GPU (--trainer.precision bf16-mixed / 16-mixed)

Every option of a recipe (several hundred lines): vtk predict RECIPE --help""",
    "test": """usage: vtk test CKPT [options]                     a checkpoint of a run: its config and data
       vtk test RECIPE --ckpt_path CKPT|NAME [options]

Scores the checkpoint on the data's test split and writes metrics.csv, the confusion matrix and
the task's reports into the run's test/ folder (test_2/ ... on repeats).

options used most:
  --data.root DIR             the data, when not where the run had it
  --trainer.limit_test_batches N   a quick check on N batches
  --model.tta_flip true       segmentation: test-time flip (and --model.tta_scales [0.75,1,1.25])
  --trainer.accelerator cuda  on a GPU

Every option of a recipe (several hundred lines): vtk test RECIPE --help""",
}


def main() -> None:
    _setup_logging()
    command = sys.argv[1] if len(sys.argv) > 1 else None
    if command in (None, "-h", "--help"):
        print(HELP)
        return
    if command in SHORT_HELP and sys.argv[2:] in (["-h"], ["--help"]):
        print(SHORT_HELP[command])
        return
    if command == "--version":
        print(f"vtk {__version__}")
        return
    if command not in ("list", "convert"):  # those two run without torch
        check_torch_pair()
    if command == "list":
        if sys.argv[2:3] == ["weights"]:
            from vtk.zoo import table

            try:
                print(table())
            except VTKError as e:
                raise SystemExit(f"vtk: error: {e}") from None
            return
        print(list_components())
        return
    if command == "export":
        from vtk.export import main as export

        export(sys.argv[2:])
        return
    if command == "serve":
        from vtk.serve import main as serve

        serve(sys.argv[2:])
        return
    if command == "convert":
        from vtk.data.convert import main as convert

        convert(sys.argv[2:])
        return
    if command == "optimize":
        from vtk.data.stream import main as optimize

        optimize(sys.argv[2:])
        return
    if command == "analyze":
        from vtk.analysis import analyze

        try:
            print(analyze(sys.argv[2:]))
        except VTKError as e:
            raise SystemExit(f"vtk: error: {e}") from None
        return
    if command not in SUBCOMMANDS:
        raise SystemExit(f"vtk: error: unknown subcommand {command!r}.\n\n{HELP}")
    try:
        rewrite_recipe_argv(sys.argv)
    except VTKError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    from vtk.runner import run

    run()


if __name__ == "__main__":
    main()
