"""What every vtk task shares: the injected model, what the data says (class names, input
spec), the optimiser and the per-step LR schedule, and the task's contract with the tools.

Optimiser and scheduler come from the recipe as callables (Lightning CLI's dependency
injection): ``optimizer(params)`` and ``lr_scheduler(optimizer, total_steps)``, where
``total_steps`` is the run's length in optimiser steps as the Trainer computes it (from
``max_steps``, or ``max_epochs`` x steps per epoch). The scheduler is stepped every step.

A task is the only place that knows its batch schema. What the tools ask of it:

* :meth:`~VisionTask.predict_step` on a prediction batch (``{"image": [tensors], "id",
  "path", "size"}``, see :mod:`vtk.data.base`) gives one result dict per image: the one
  prediction path, used by ``vtk predict`` and ``vtk.load(...).predict``;
* ``input_spec`` (kept in the checkpoint) says how an image becomes that batch's tensor;
* :meth:`~VisionTask.training_losses` gives a batch's losses (benchmarks);
* :meth:`~VisionTask.example_input` / :meth:`~VisionTask.export_spec` give the network's input
  and what ONNX export needs; :meth:`~VisionTask.object_sizes` what ``vtk analyze --data``
  compares with the receptive field.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities import move_data_to_device
from lightning.pytorch import Callback, LightningModule
from torch import Tensor, nn
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import LRScheduler

from vtk._compat import recipe_config_given
from vtk.data.base import resolve_class_names
from vtk.errors import ConfigError, TrainingError
from vtk.models.backbones.base import network_normalisation
from vtk.models.fuse import fold_batchnorm
from vtk.optim import WarmupPolyLR, parameter_groups
from vtk.spec import InputSpec

log = logging.getLogger("vtk")

OptimizerFactory = Callable[[Iterable], Optimizer]
SchedulerFactory = Callable[[Optimizer, int], LRScheduler]


class VisionTask(LightningModule):
    """Base of the vtk tasks.

    Args:
        model: the ``torch.nn`` model (from ``vtk.models``), built by the recipe; it has an
            integer ``num_classes`` attribute.
        optimizer: ``optimizer(params)``; default SGD (lr 0.01, momentum 0.9, wd 1e-4).
        lr_scheduler: ``lr_scheduler(optimizer, total_steps)``; default poly (power 0.9).
        class_names: one per class (linked from the data); default "0", "1", ...
        category_ids: the dataset's own id of each class (COCO's category ids; linked from the
            data), written into results files; default the class indices.
        input_spec: how images are prepared for evaluation and prediction
            (:class:`~vtk.spec.InputSpec` as a dict; linked from the data's
            ``input_spec``); default :meth:`default_input_spec`.
        backbone_lr_mult: the backbone's LR as a multiple of the optimizer's (mmdetection's
            ``custom_keys={'backbone': {'lr_mult': ...}}``): 0.1 is common when fine-tuning a
            pretrained backbone under a new head. The backbone is the model's
            :class:`~vtk.models.backbones.base.Backbone` (for a detector its body, not the FPN).
        norm_bias_decay: apply the optimizer's weight decay to normalisation layers' parameters
            and to biases; ``False`` exempts them (torchvision's ``--norm-weight-decay 0`` and
            ``--bias-weight-decay 0``, mmdetection's ``norm_decay_mult=0, bias_decay_mult=0``).
        channels_last: train (and evaluate) with the network's weights and the batch's images in
            the channels-last memory format (NHWC): the same numbers, faster convolutions on
            CPUs with oneDNN and on tensor-core GPUs (README: training speed).
        compile_model: ``torch.compile`` the network for training, in place (parameter names
            and checkpoints unchanged; a detector's backbone and neck, see
            :meth:`compile_network`). Off by default: on a 2-core CPU it measured slower than
            eager for the CamVid recipe's network (README: training speed); compiling takes
            minutes and pays on GPUs and long runs.
        nonfinite_skips: how many optimiser steps with a non-finite loss or gradient may be
            skipped (weights, BatchNorm statistics and optimiser state left as they were, each
            one logged) before training stops. Default 0: the first one stops the run with a
            :class:`~vtk.errors.TrainingError` that names the step, the losses, the LR and the
            batch's images; no checkpoint is written from such weights. All processes decide
            together under DDP. Under ``16-mixed`` the gradient scaler skips steps whose
            gradients overflow, as it should; a non-finite *loss* still counts here.
    """

    #: the validation metric a run is judged by, and whether higher is better: what vtk's default
    #: "best" checkpoint monitors (``vtk.recipe.default_run_config``)
    main_metric: tuple[str, str] = ("val/loss", "min")

    #: arguments that say how to evaluate, not what was trained: with ``--ckpt_path`` the
    #: ``vtk`` command takes them from this run's recipe and command line, not the checkpoint
    eval_options: tuple[str, ...] = ()

    #: how a deployment reads the exported graph's outputs: the name of a reader of the
    #: torch-free runtime (:data:`vtk.deploy.READERS`); ``vtk export`` writes it as ``vtk.task``
    deploy_kind: str = ""

    #: why ``vtk export --int8`` cannot quantise this task's graph (None: it can)
    int8_refusal: str | None = None

    #: the multiple a dense network's input side is padded to (its output stride)
    size_divisor: int = 32

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        input_spec: dict[str, Any] | None = None,
        backbone_lr_mult: float = 1.0,
        norm_bias_decay: bool = True,
        channels_last: bool = False,
        nonfinite_skips: int = 0,
        compile_model: bool = False,
    ) -> None:
        super().__init__()
        # Under `vtk` the hyper-parameters are the recipe's config (class_path / init_args), so
        # a checkpoint can rebuild its model; a model (or loss) built in Python is a module,
        # which belongs in the state_dict, not in the hyper-parameters.
        self.save_hyperparameters(ignore=None if recipe_config_given() else ["model", "losses"])
        num_classes = getattr(model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ConfigError(
                f"{type(model).__name__} has no integer num_classes attribute; "
                f"{type(self).__name__} needs one to size its metrics."
            )
        self.model = model
        self.num_classes = num_classes
        self.class_names = resolve_class_names(num_classes, class_names)
        if category_ids is not None and len(category_ids) != num_classes:
            raise ConfigError(
                f"{len(category_ids)} category_ids for a model with num_classes={num_classes}."
            )
        self.category_ids = (
            list(range(num_classes)) if category_ids is None else [int(c) for c in category_ids]
        )
        self.input_spec = (
            InputSpec.from_dict(input_spec) if input_spec else self.default_input_spec()
        )
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        if backbone_lr_mult < 0:
            raise ConfigError(f"backbone_lr_mult must be 0 or more, got {backbone_lr_mult}.")
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.norm_bias_decay = bool(norm_bias_decay)
        self.channels_last = bool(channels_last)
        self.compile_model = bool(compile_model)
        if nonfinite_skips < 0:
            raise ConfigError(f"nonfinite_skips must be 0 or more, got {nonfinite_skips}.")
        self.nonfinite_skips = int(nonfinite_skips)
        #: steps skipped so far for a non-finite loss or gradient (kept in the checkpoint)
        self.skipped_steps = 0
        self._last_losses: dict[str, Tensor] = {}
        self._last_batch: Any = None
        self._buffers_before: list[Tensor] | None = None
        #: the total batch the recipe's LR is for (``vtk fit --scale_lr_from N``): the LR is
        #: scaled linearly to this run's total batch; not a hyper-parameter (set by the CLI)
        self.lr_base_batch: int | None = None
        #: where ``vtk test`` / ``vtk predict`` write files (``--output_dir``); default the run
        #: folder (test) and ``<run folder>/predictions`` (predict)
        self.output_dir: str | None = None
        #: ``trainer.predict`` runs the fast path (:meth:`fold_batchnorm`, channels_last), as
        #: :class:`vtk.api.Predictor` does (``vtk predict --fast false`` turns it off)
        self.fast_predict = True

    def __deepcopy__(self, memo: dict[int, Any]) -> VisionTask:
        """A copy without the run (as LightningModule pickles) whose optimizer and scheduler
        factories are shared, not copied: they are stateless callables from the recipe, and
        under the vtk command's DDP they reach objects that cannot be copied (a copy is what
        Lightning's EMAWeightAveraging makes)."""
        for factory in (self.optimizer_factory, self.lr_scheduler_factory):
            if factory is not None:
                memo[id(factory)] = factory
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return copied

    def normalise_data_as_weights(
        self, datamodule: Any, saved_spec: dict[str, Any] | None = None
    ) -> None:
        """The data normalises as the network's weights were trained (their owner says:
        torchvision's weights enum, timm's ``pretrained_cfg``, a vtk card), or, for a run from a
        checkpoint, as the run that saved it did (``saved_spec``), unless the data gives its
        own mean/std; this task's input spec (kept in its checkpoint, used by export and
        prediction) follows. What the ``vtk`` command does once data and task are built."""
        adopt = getattr(datamodule, "adopt_normalisation", None)
        if adopt is None:
            return
        if saved_spec:
            mean, std = saved_spec.get("mean"), saved_spec.get("std")
            norm, source = ((mean, std) if mean and std else None), "the checkpoint"
        else:
            norm, source = network_normalisation(self.model), "the backbone's weights"
        if norm is not None and adopt(norm, source):
            self.input_spec = datamodule.eval_spec()
            self.hparams["input_spec"] = datamodule.input_spec

    # -- the task's contract --------------------------------------------------------------------
    def default_input_spec(self) -> InputSpec:
        """The input spec without data: ImageNet normalisation at the image's own size."""
        return InputSpec()

    def training_losses(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The losses of a training batch; ``"loss"`` is the total that is optimised."""
        raise NotImplementedError

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        """One result dict per image of a prediction batch (``id`` and ``path`` included)."""
        raise NotImplementedError

    def prediction_writer(self, output_dir: Path) -> Callback:
        """The callback that writes what ``vtk predict`` computes."""
        raise NotImplementedError

    def default_size(self) -> int:
        """The side of the network's usual input: the crop, else the padded size, else 224."""
        return _side(self.input_spec.crop) or _side(self.input_spec.pad_to) or 224

    def example_input(self, size: int | None = None, batch: int = 1) -> Any:
        """A (seeded random) input for ``self.model``: ``batch`` images of ``size`` squared
        (default :meth:`default_size`), as the input spec prepares them."""
        side = size or self.default_size()
        return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))

    def export_spec(self, size: int) -> dict[str, Any]:
        """What ONNX export needs: ``module`` (the network in eval mode), ``example`` (its
        positional input), ``input_names``, ``output_names`` and ``dynamic_axes``."""
        return {
            "module": self.model.eval(),
            "example": self.example_input(size, batch=2),
            "input_names": ["image"],
            "output_names": ["logits"],
            "dynamic_axes": {"image": {0: "batch", 2: "height", 3: "width"}},
        }

    def deploy_metadata(self) -> dict[str, str]:
        """What a deployment needs to prepare an image and read the exported outputs, as ONNX
        metadata (``vtk.*`` strings, read by :class:`vtk.deploy.OnnxPredictor`): the reader
        (:attr:`deploy_kind`), the input spec, the classes; a task adds its own (``vtk.top_k``,
        ``vtk.threshold``). ``vtk export``, ``vtk serve`` and ``vtk export --int8`` ask the task
        for these and branch on no task's name."""
        if not self.deploy_kind:
            raise ConfigError(f"{type(self).__name__} does not say how a deployment reads it.")
        meta = {
            "vtk.task": self.deploy_kind,
            "vtk.input_spec": json.dumps(self.input_spec.to_dict()),
            "vtk.class_names": json.dumps(list(self.class_names)),
            "vtk.category_ids": json.dumps([int(c) for c in self.category_ids]),
            "vtk.size_divisor": str(self.size_divisor),
        }
        return {**meta, "vtk.int8_refusal": self.int8_refusal} if self.int8_refusal else meta

    def fold_batchnorm(self) -> dict[str, Any]:
        """Fold the network's BatchNorms into their convolutions for inference (in place: the
        task then predicts, it no longer trains as before), checked on :meth:`fold_example`;
        returns the report (``pairs``, ``max_abs_diff``). A network that cannot be folded
        exactly stays as it is, and the report says why (``error``)."""
        example, run = self.fold_example()
        example = move_data_to_device(example, self.device)
        try:
            folded, report = fold_batchnorm(self.model, example, run)
        except (ValueError, RuntimeError) as e:
            log.warning("BatchNorm not folded (%s): the network runs as trained", e)
            return {"pairs": 0, "error": str(e)}
        self.model = folded
        return report

    def on_predict_start(self) -> None:
        if not self.fast_predict or getattr(self, "_folded", False):
            return
        report = self.fold_batchnorm()
        self._folded = True
        if self.device.type in ("cpu", "cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.trainer.is_global_zero:
            log.info(
                "fast path: %d BatchNorms folded (max difference %.2g), channels_last",
                report["pairs"], report.get("max_abs_diff", 0.0),
            )  # fmt: skip

    def compile_network(self, compile: Callable[[nn.Module], nn.Module]) -> None:
        """Compile the part of the network that compiles well (``compile(module)``): all of it."""
        self.model = compile(self.model)

    def fold_example(self) -> tuple[Any, Any]:
        """An input on which the folded network is checked, and how to run it (None: the
        network's forward): a small random batch at :meth:`default_size` (at most 128)."""
        return self.example_input(min(self.default_size(), 128), batch=1), None

    def object_sizes(self, datamodule: Any) -> tuple[np.ndarray, str]:
        """The longer sides (pixels at the network's input) of the objects of the validation
        data, and what they are: what ``vtk analyze --data`` compares with the receptive
        field. By default the whole input crop."""
        side = self.default_size()
        return np.asarray([side], dtype=np.float64), f"the {side} px input crop (the whole image)"

    # -- shared ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # in Python nothing links the data's ids to the task: results files written with other
        # ids than the annotations' would score wrong without a word, so say it here
        data = getattr(self.trainer, "datamodule", None)
        ids = getattr(data, "category_ids", None)
        if ids is not None and [int(i) for i in ids] != self.category_ids:
            raise ConfigError(
                f"the data's category_ids {list(ids)[:8]} differ from {type(self).__name__}'s "
                f"{self.category_ids[:8]}: results files would carry the wrong ids. Pass "
                "category_ids=datamodule.category_ids (the vtk command links them)."
            )

    def on_fit_start(self) -> None:
        frozen = sum(not m.training for m in self.model.modules())
        if frozen and self.trainer.is_global_zero:
            log.info("%d modules kept in eval mode (frozen stages, norm_eval)", frozen)
        if self.channels_last:  # in place: the optimizer's parameters stay the same objects
            self.model.to(memory_format=torch.channels_last)
        if self.compile_model and not getattr(self, "_compiled_for_training", False):
            self.compile_network(_compile_in_place)
            self._compiled_for_training = True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # a run whose max_steps ends inside an epoch would stop without a validation (no
        # metric, no best checkpoint): Lightning validates a run that is told to stop
        trainer = self.trainer
        if 0 < trainer.max_steps <= trainer.global_step and not trainer.should_stop:
            trainer.should_stop = True

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if isinstance(batch, dict):  # the batch dict is the one training_step receives
            images = batch.get("image")
            if self.channels_last and isinstance(images, Tensor) and images.dim() == 4:
                batch["image"] = images.contiguous(memory_format=torch.channels_last)
        self._last_batch = batch
        # a skipped step must also leave BatchNorm's running statistics as they were
        self._buffers_before = (
            [b.detach().clone() for b in self.model.buffers()]
            if self.skipped_steps < self.nonfinite_skips
            else None
        )

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every image of the batch failed to decode (on_bad_image: skip)
            return None
        losses = self.training_losses(batch)
        self.remember_losses(losses)
        n = len(batch["image"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=n)
        self.log_lr()
        return losses["loss"]

    def remember_losses(self, losses: dict[str, Tensor]) -> None:
        """Keep a training step's loss terms for the non-finite check (every training_step
        calls this)."""
        self._last_losses = {k: v.detach() for k, v in losses.items()}

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Stop, or skip the step (``nonfinite_skips``), when the loss or the gradients are not
        finite: one decision for all processes."""
        loss = self._last_losses.get("loss")
        bad_loss = loss is not None and not bool(torch.isfinite(loss).all())
        bad_grad = False
        if getattr(self.trainer.precision_plugin, "scaler", None) is None:  # no fp16 scaler
            grads = [
                p.grad for group in optimizer.param_groups for p in group["params"]
                if p.grad is not None
            ]  # fmt: skip
            if grads:  # DDP has already summed them: every process sees the same
                bad_grad = not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if not self.trainer.strategy.reduce_boolean_decision(bad_loss or bad_grad, all=False):
            return
        what = "loss" if bad_loss else "gradient"
        if self.skipped_steps < self.nonfinite_skips:
            self.skipped_steps += 1
            optimizer.zero_grad(set_to_none=True)  # SGD/Adam leave a parameter without grad
            if self._buffers_before is not None:
                for buffer, saved in zip(self.model.buffers(), self._buffers_before):
                    buffer.copy_(saved)
            if self.trainer.is_global_zero:
                log.warning(
                    "skipped step %d (epoch %d): non-finite %s (%s); %d of %d skips used",
                    self.trainer.global_step, self.current_epoch, what, self._loss_text(),
                    self.skipped_steps, self.nonfinite_skips,
                )  # fmt: skip
            self.log("train/skipped_steps", float(self.skipped_steps), on_step=True)
            return
        raise TrainingError(
            f"training stopped at step {self.trainer.global_step} (epoch {self.current_epoch}): "
            f"the {what} is not finite ({self._loss_text()}) at lr "
            f"{optimizer.param_groups[0]['lr']:.4g}; batch: {self._batch_text()}. Try a lower "
            "LR (--model.init_args.optimizer.init_args.lr), fp32 (--trainer.precision "
            "32-true), a look at these images and their labels (vtk analyze --data, "
            "tools/browse_dataset.py), or skip up to N such steps with "
            "--model.init_args.nonfinite_skips N. Nothing was saved from these weights"
            + (f"; {self.skipped_steps} steps were skipped before." if self.skipped_steps else ".")
        )

    def _loss_text(self) -> str:
        return ", ".join(f"{k}={float(v):.4g}" for k, v in self._last_losses.items()) or "no loss"

    def _batch_text(self) -> str:
        batch = self._last_batch if isinstance(self._last_batch, dict) else {}
        names = batch.get("path") or batch.get("id") or batch.get("image_id") or []
        names = [Path(str(n)).name if str(n) else "" for n in names]
        names = [n for n in names if n] or [str(i) for i in (batch.get("id") or [])]
        if not names:
            return "(no image names)"
        return ", ".join(names[:8]) + (f" ... ({len(names)} images)" if len(names) > 8 else "")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.skipped_steps:
            checkpoint["vtk_skipped_steps"] = self.skipped_steps

    def configure_callbacks(self) -> list[Callback]:
        if not self.trainer.predicting:
            return []
        return [self.prediction_writer(self.output_path("predictions"))]

    def output_path(self, default: str) -> Path:
        """``--output_dir``, or ``default`` inside the run folder."""
        if self.output_dir:
            return Path(self.output_dir)
        return Path(self.trainer.log_dir or self.trainer.default_root_dir) / default

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters in optimizer groups (:func:`vtk.optim.parameter_groups`:
        ``backbone_lr_mult``, ``norm_bias_decay``)."""
        return parameter_groups(
            self.model, self.backbone_lr_mult, self.norm_bias_decay, self.parameters()
        )

    def configure_optimizers(self) -> dict:
        groups = self.parameter_groups()
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(groups)
        else:
            optimizer = SGD(groups, lr=0.01, momentum=0.9, weight_decay=1e-4)
        for group in optimizer.param_groups:  # before the scheduler reads the initial LRs
            group["lr"] *= group.get("lr_mult", 1.0)
        if self.lr_base_batch:
            self._scale_lr(optimizer, self.lr_base_batch)
        total = self.trainer.estimated_stepping_batches
        if not 0 < total < float("inf"):
            raise ConfigError(
                "cannot size the LR schedule: set trainer.max_steps or trainer.max_epochs."
            )
        factory = self.lr_scheduler_factory or WarmupPolyLR
        scheduler = factory(optimizer, int(total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _scale_lr(self, optimizer: Optimizer, base_batch: int) -> None:
        """The linear scaling rule (Goyal et al. 2017, as torchvision's and mmdet's references):
        LR x total batch / the batch the recipe's LR is for. Before a resumed run's optimiser
        state is restored, so a resumed run keeps the LR it had."""
        trainer = self.trainer
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        if not isinstance(batch_size, int):
            raise ConfigError("--scale_lr_from needs a DataModule with a batch_size.")
        total = batch_size * trainer.world_size * trainer.accumulate_grad_batches
        factor = total / base_batch
        for group in optimizer.param_groups:
            group["lr"] *= factor
        if trainer.is_global_zero:
            log.info(
                "LR scaled x%.4g to %.4g (linear rule): total batch %d = batch_size %d x %d "
                "processes x %d accumulated, the recipe's LR is for %d",
                factor, optimizer.param_groups[0]["lr"], total, batch_size, trainer.world_size,
                trainer.accumulate_grad_batches, base_batch,
            )  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the run's input spec from the checkpoint (so it predicts as it was validated,
        whatever the data says now), and refuse a checkpoint whose tensors do not fit this
        model, naming them, before Lightning fails on them: typically one trained for another
        number of classes than the data has."""
        self.skipped_steps = int(checkpoint.get("vtk_skipped_steps", 0))
        saved_spec = (checkpoint.get("hyper_parameters") or {}).get("input_spec")
        if saved_spec:
            self.input_spec = InputSpec.from_dict(saved_spec)
        own = self.state_dict()
        saved_keys = set(checkpoint.get("state_dict", {}))
        missing, unexpected = sorted(set(own) - saved_keys), sorted(saved_keys - set(own))
        if saved_keys and (missing or unexpected):
            raise ConfigError(
                "the checkpoint was saved from a different model (another recipe?): "
                + "; ".join(
                    f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                    for what, keys in (
                        ("only in the checkpoint:", unexpected),
                        ("only in this model:", missing),
                    )
                    if keys
                )
                + ". Use the recipe that saved it."
            )
        mismatched = [
            f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})"
            for k, v in checkpoint.get("state_dict", {}).items()
            if k in own and hasattr(v, "shape") and v.shape != own[k].shape
        ]
        if not mismatched:
            return
        saved = checkpoint.get("hyper_parameters", {}).get("model", {})
        saved_classes = (
            saved.get("init_args", {}).get("num_classes") if isinstance(saved, dict) else None
        )
        what = (
            f"it was trained for num_classes={saved_classes}, the data has {self.num_classes}"
            if saved_classes is not None and saved_classes != self.num_classes
            else "it was saved from a differently configured model"
        )
        raise ConfigError(
            f"the checkpoint does not fit this model: {what}. Tensors that differ: "
            f"{'; '.join(mismatched[:4])}. Use the data the checkpoint was trained on, or fine-tune "
            "from it with the model's weights argument instead of --ckpt_path."
        )

    def log_lr(self) -> None:
        """``train/lr`` (the full LR), and ``train/lr_backbone`` when it differs."""
        optimizer = self.optimizers(use_pl_optimizer=False)
        groups = optimizer.param_groups
        self.log("train/lr", groups[0]["lr"], on_step=True, on_epoch=False)
        backbone = [g for g in groups if str(g.get("name", "")).startswith("backbone")]
        if backbone and self.backbone_lr_mult != 1.0:
            self.log("train/lr_backbone", backbone[0]["lr"], on_step=True, on_epoch=False)


def _compile_in_place(module: nn.Module) -> nn.Module:
    """``module.compile()``: compiled on its first call, the same object (its parameter names,
    and so the checkpoint's keys, unchanged; ``torch.compile(module)`` would wrap it)."""
    module.compile()
    return module


def _side(size: int | Sequence[int] | None) -> int | None:
    if size is None:
        return None
    return int(size) if isinstance(size, int) else int(max(size))
