"""Fine-tune a trained run: continue from its selected weights, on its data or other data of
its tasks, with layer groups frozen, unfrozen on a schedule (gradual unfreezing), or with
learning rates of their own (discriminative fine-tuning, ``optim.group_lr_scale``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtlkit.config import ConfigError
from mtlkit.models import group_parameters, layer_groups
from mtlkit.workflows.build import build_tasks, load_data
from mtlkit.workflows.cells import refuse_several_processes
from mtlkit.workflows.restore import restore_run
from mtlkit.workflows.run_dir import SavedData
from mtlkit.workflows.train import RunResult
from mtlkit.workflows.transfer import derive_from_run, fit_into_run_dir, transferred_model


def finetune(
    run_dir: str | Path,
    config_path: str | Path | None,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
) -> RunResult:
    """Fine-tune the run in ``run_dir`` into a new run folder ``out_dir``.

    The config is the run's, changed by the file at ``config_path`` (only what differs, e.g.
    ``train.epochs: 3`` and a ``finetune:`` section with ``freeze`` and ``unfreeze``) and by
    ``overrides``; the network stays the run's, its tasks a subset of the run's.

    Raises:
        LaunchError: started as several processes (torchrun).
        ConfigError: a bad config, a change of the network, data of another input shape, a
            task the run does not have (that is ``mtlkit add-task``), an unknown layer group.
        CheckpointError: the run has no readable selected weights.
    """
    refuse_several_processes("mtlkit finetune")
    derived = derive_from_run(run_dir, config_path, overrides)
    config = derived.config
    data = load_data(config)
    known = [task.name for task in derived.source.tasks]
    for spec in data.tasks:
        if spec.name not in known:
            raise ConfigError(
                f"tasks: the run has no task {spec.name!r} (its tasks: {', '.join(known)}); to "
                "add a task, use mtlkit add-task."
            )
    tasks = build_tasks(config, data.tasks)
    model = transferred_model(derived.source, config, data.input_shape, tasks)
    source = str(Path(run_dir).absolute())
    return fit_into_run_dir(
        config,
        out_dir,
        data,
        tasks,
        model,
        derived.plan,
        SavedData(data.tasks, data.input_shape, data.preprocessing),
        lambda _: {"workflow": "finetune", "source": source},
    )


def group_sizes(run_dir: str | Path) -> dict[str, int]:
    """The layer groups of a trained run's network (``stage1``, …, ``heads``), input side
    first, with their numbers of parameters.

    Raises:
        ConfigError: not a run folder, or a network without layer groups.
    """
    run = restore_run(run_dir, "cpu")
    try:
        groups = layer_groups(run.model)
    except ValueError as error:
        raise ConfigError(f"{run_dir}: {error}") from None
    return {
        name: sum(p.numel() for p in group_parameters(modules)) for name, modules in groups.items()
    }
