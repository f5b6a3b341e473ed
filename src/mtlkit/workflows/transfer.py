"""What every workflow that starts from a trained run shares (``mtlkit finetune``, ``mtlkit
add-task``): the config derived from the run's, the network rebuilt with the run's selected
weights, the freezing plan applied epoch by epoch, and the training of that network into a
finished run folder of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtlkit.atomic import write_text_atomic
from mtlkit.balancing import Balancer, Need
from mtlkit.config import ConfigError, ExperimentConfig, FinetuneConfig, derive_config
from mtlkit.data import MultiTaskData
from mtlkit.models import ARCHITECTURES, HEADS, GroupFreezer, HardSharing, MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.training import CheckpointError, EpochRecord
from mtlkit.training.run_log import RunLog
from mtlkit.workflows.build import (
    build_balancer,
    build_model,
    eval_batches,
    resolve_device,
    train_batches,
)
from mtlkit.workflows.ensemble import check_ensembles
from mtlkit.workflows.restore import TrainedRun, restore_run
from mtlkit.workflows.run_dir import RunDir, SavedData
from mtlkit.workflows.train import RunResult, complete_run
from mtlkit.workflows.trainer import build_trainer


@dataclass
class Derived:
    """A trained run and the config that continues from it.

    Attributes:
        source: the trained run, its selected weights loaded.
        config: the run's config with the changes asked for.
        plan: what is frozen, and when it learns again.
    """

    source: TrainedRun
    config: ExperimentConfig
    plan: FinetuneConfig


def require_layer_groups(config: ExperimentConfig, run_dir: str | Path, workflow: str) -> None:
    """Refuse, for ``workflow``, the run in ``run_dir`` (trained with ``config``) when its
    network has no layer groups: a soft-sharing architecture, whose tasks read features of
    their own (:func:`~mtlkit.models.layer_groups`).

    Raises:
        ConfigError: naming the run, its ``model.sharing`` and the fix.
    """
    sharing = config.model.sharing
    if not issubclass(ARCHITECTURES.get(sharing).cls, HardSharing):
        raise ConfigError(
            f"{run_dir}: model.sharing is {sharing!r}, whose tasks read features of their own; "
            f"{workflow} needs the layer groups (stage1, ..., heads) of one shared trunk: use a "
            "run trained with model.sharing: hard."
        )


def derive_from_run(
    run_dir: str | Path, config_path: str | Path | None, overrides: Sequence[str] = ()
) -> Derived:
    """The run in ``run_dir`` and the config that changes its config by the file at
    ``config_path`` (only what differs, and a ``finetune:`` section) and ``overrides``.

    Raises:
        ConfigError: not a run folder, a network without layer groups (soft sharing), a bad
            config, or a change of the network (``model.*``): the run's weights fit its own
            network only.
        CheckpointError: the run has no readable ``best.pt``.
    """
    base = RunDir(Path(run_dir)).read_config()
    require_layer_groups(base, run_dir, "fine-tuning")
    config, plan = derive_config(base, config_path, overrides)
    for key, value in config.model.model_dump().items():
        if value != getattr(base.model, key):
            raise ConfigError(
                f"model.{key}: the run's weights fit its own network ({key} = "
                f"{getattr(base.model, key)!r}); remove model.{key} from the config."
            )
    source = restore_run(run_dir, config.train.device)
    return Derived(source, config, plan)


def transferred_model(
    source: TrainedRun, config: ExperimentConfig, input_shape: Sequence[int], tasks: list[Task]
) -> MultiTaskModel:
    """A network for ``tasks`` whose trunk and whose heads of the run's tasks hold the run's
    selected weights; a task the run did not have gets a new head (seeded by ``config.seed``).

    Raises:
        ConfigError: inputs of another shape than the run's, or a task of the run with another
            number of outputs.
    """
    trained_shape = tuple(source.folder.read_preprocessing().input_shape)
    if tuple(input_shape) != trained_shape:
        raise ConfigError(
            f"data: the run's trunk reads inputs of shape {trained_shape}, the data's are "
            f"{tuple(input_shape)}; choose data of the run's input shape."
        )
    old = {task.name: task for task in source.tasks}
    for task in tasks:
        if task.name in old and old[task.name].output_size != task.output_size:
            raise ConfigError(
                f"tasks: task {task.name!r} has {task.output_size} outputs here and "
                f"{old[task.name].output_size} in the run; rename it to add it as a new task."
            )
    model = build_model(config, input_shape, tasks)
    new = [task.name for task in tasks if task.name not in old]
    state = {
        key: value.to("cpu")
        for key, value in source.model.state_dict().items()
        if not key.startswith(f"{HEADS}.") or key.split(".")[1] in model.task_names
    }
    missing, _ = model.load_state_dict(state, strict=False)
    unfilled = [key for key in missing if key.split(".")[:2] not in ([HEADS, t] for t in new)]
    if unfilled:
        raise CheckpointError(
            f"{source.folder.best} does not fill {unfilled[0]} of the network; retrain the run."
        )
    return model


class UnfreezeSchedule:
    """The plan of a :class:`~mtlkit.config.FinetuneConfig` applied to one network: its groups
    frozen at the start, each unfrozen at the start of its epoch.

    Raises:
        ConfigError: a group the network does not have, an unfreezing epoch after the last of
            ``epochs``, or a gradient-aggregating balancer while every trunk group is frozen (the
            tasks then share no parameter to aggregate).
    """

    def __init__(
        self, model: MultiTaskModel, plan: FinetuneConfig, balancer: Balancer, epochs: int
    ) -> None:
        for group, epoch in plan.unfreeze.items():
            if epoch > epochs:
                raise ConfigError(
                    f"finetune.unfreeze.{group}: epoch {epoch} comes after the last one "
                    f"(train.epochs = {epochs}); unfreeze it earlier or train longer."
                )
        try:
            self.freezer = GroupFreezer(model)
            self.freezer.freeze(plan.freeze)
        except ValueError as error:
            raise ConfigError(f"finetune.freeze: {error}") from None
        self.plan = plan
        trunk = [name for name in self.freezer.groups if name != HEADS]
        if balancer.needs is not Need.LOSSES and set(trunk) <= set(plan.freeze):
            raise ConfigError(
                "finetune.freeze: every trunk group is frozen at the start, so the tasks share "
                f"no parameter for {type(balancer).__name__} to aggregate; use a loss weighting "
                "(balancer.name: ew) or keep a stage trainable."
            )

    def frozen_at(self, epoch: int) -> list[str]:
        """The groups frozen during ``epoch``."""
        return [
            name for name in self.plan.freeze if self.plan.unfreeze.get(name, epoch + 1) > epoch
        ]

    def start_epoch(self, epoch: int) -> None:
        """Unfreeze the groups whose epoch has come."""
        self.freezer.unfreeze(name for name, first in self.plan.unfreeze.items() if first == epoch)


def fit_into_run_dir(
    config: ExperimentConfig,
    run_dir: str | Path,
    data: MultiTaskData,
    tasks: list[Task],
    model: MultiTaskModel,
    plan: FinetuneConfig,
    saved: SavedData,
    transfer: Callable[[MultiTaskModel], dict[str, Any]],
) -> RunResult:
    """Train ``model`` (its ``tasks``, on ``data``) under ``plan`` and write a finished run
    folder: the files of ``mtlkit train`` but ``last.pt`` (not resumable; ``preprocessing.json``
    from ``saved``) and ``transfer.json``, which holds ``transfer(trained model)``, the plan and
    each epoch's frozen groups.
    """
    start = time.perf_counter()
    folder = RunDir(Path(run_dir))
    device = resolve_device(config.train.device)
    check_ensembles(config, tasks, data)
    balancer = build_balancer(config, len(tasks))
    schedule = UnfreezeSchedule(model, plan, balancer, config.train.epochs)
    trainer = build_trainer(config, model, tasks, balancer, device)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_config(config)
    folder.write_saved(saved)
    log = RunLog(folder.path)
    frozen: dict[int, list[str]] = {}

    def epoch_batches(epoch: int):
        schedule.start_epoch(epoch)
        frozen[epoch] = schedule.frozen_at(epoch)
        return train_batches(config, data.train, epoch)

    def on_epoch(record: EpochRecord) -> None:
        log.write(record)
        groups = ", ".join(frozen[record.epoch]) or "none"
        losses = "  ".join(f"{t}={v:.4f}" for t, v in record.train_loss.items())
        print(
            f"[{config.name}] epoch {record.epoch}/{config.train.epochs}  loss {losses}  "
            f"frozen: {groups}  ({record.seconds:.1f}s)",
            flush=True,
        )

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        try:
            fit = trainer.fit(
                epoch_batches,
                config.train.epochs,
                None if data.val is None else lambda: eval_batches(config, data.val),
                on_epoch,
            )
        finally:
            log.close()
    record = {
        **transfer(trainer.model),
        "freeze": plan.freeze,
        "unfreeze": plan.unfreeze,
        "frozen_by_epoch": {str(epoch): groups for epoch, groups in frozen.items()},
    }
    write_text_atomic(folder.transfer, json.dumps(record, indent=2))
    return complete_run(
        folder, config, trainer, fit, data, tasks, device, start, info=_summary(record)
    )


def _summary(record: dict[str, Any]) -> dict[str, object]:
    """The transfer facts a run's report lists."""
    facts: dict[str, object] = {"started from": record["source"]}
    if record["freeze"]:
        facts["frozen"] = ", ".join(record["freeze"])
    if record["unfreeze"]:
        facts["unfrozen"] = ", ".join(f"{g} at epoch {e}" for g, e in record["unfreeze"].items())
    if "bwt" in record:
        facts["backward transfer (BWT)"] = record["bwt"]
    return facts
