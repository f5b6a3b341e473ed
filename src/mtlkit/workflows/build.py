"""The parts of a run, built from a validated configuration.

Each builder reads the config and the registries, nothing else; the workflows (train,
baselines, evaluate, predict, …) assemble them. The config was checked when it was parsed, so
nothing here validates it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

import torch

from mtlkit.balancing import Balancer, create
from mtlkit.balancing.preference import PreferenceScalarisation
from mtlkit.config import ConfigError, ExperimentConfig, balancer_options
from mtlkit.data import (
    Batch,
    MultiInputBatches,
    MultiTaskData,
    Split,
    TableTask,
    TaskByTaskBatches,
    TaskSpec,
    TaskSplits,
    TensorBatches,
    load_benchmark,
    load_table,
)
from mtlkit.models import (
    PREFERENCE_MODELS,
    MultiTaskModel,
    TemperatureScaled,
    create_backbone,
    create_model,
    is_dense,
    task_head,
    wrap_preference,
)
from mtlkit.tasks import ClassificationTask, Task, create_task
from mtlkit.tasks.base import Combine
from mtlkit.tasks.weighting import InverseFrequency
from mtlkit.training import (
    GROUPS,
    InputNoise,
    ParameterPenalties,
    ParamGroup,
    Penalty,
    Views,
    create_optimizer,
    create_scheduler,
)
from mtlkit.training.optim import rate_groups


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} was asked for but no CUDA GPU is visible.")
    return device


def memory_format(config: ExperimentConfig) -> torch.memory_format:
    """Channels-last for image trunks when the config asks for it (faster convolutions on CPU)."""
    return torch.channels_last if config.train.channels_last else torch.contiguous_format


def trainer_settings(config: ExperimentConfig) -> dict[str, object]:
    """The :class:`~mtlkit.training.Trainer` keywords that ``train:`` sets (layout, precision,
    compilation, the non-finite guard, gradient cosines), for every workflow that trains."""
    train = config.train
    return {
        "channels_last": train.channels_last,
        "precision": train.precision,
        "compile": train.compile,
        "check_finite_every": train.check_finite_every,
        "on_nonfinite": train.on_nonfinite,
        "task_cosine_every": train.log_task_cosine_every,
    }


def table_tasks(config: ExperimentConfig) -> list[TableTask]:
    """Every task the config declares for its table(s), in declaration order."""
    return [
        TableTask(
            name,
            entry.type,
            column=entry.column,
            columns=tuple(entry.columns or ()),
            positive=entry.positive,
            loss=entry.loss,
            table=entry.table,
            weight_column=entry.weight_column,
        )
        for name, entry in config.tasks.entries.items()
    ]


def load_data(config: ExperimentConfig) -> MultiTaskData:
    """The benchmark or the table(s) the config names, restricted to ``tasks.include`` when
    given (a table's preprocessing is fitted for every declared task, so that a single-task
    baseline reads exactly the features of the multi-task run)."""
    data_config = config.data
    if config.source == "benchmark":
        data = load_benchmark(
            data_config.benchmark,
            protocol=data_config.protocol,
            seed=config.seed,
            val_fraction=data_config.val_fraction,
            limit=data_config.limit,
            data_dir=data_config.data_dir,
            **data_config.benchmark_options,
        )
    else:
        options = {
            "features": data_config.features,
            "categorical": data_config.categorical,
            "val_fraction": data_config.val_fraction,
            "test_fraction": data_config.test_fraction,
            "split_column": data_config.split_column,
            "seed": config.seed,
            "limit": data_config.limit,
            "max_categories": data_config.max_categories,
        }
        data = load_table(data_config.table, table_tasks(config), **options)
    include = config.tasks.include
    return data if include is None else data.subset(include)


def build_tasks(
    config: ExperimentConfig, specs: Sequence[TaskSpec], train: Split | TaskSplits | None = None
) -> list[Task]:
    """One task per spec, with the config's metric and loss techniques for it.

    ``train``: the training split, whose class counts ``instance_weights: inverse_frequency``
    reads (without it, as when a trained run is evaluated, the loss is unweighted).
    """
    entries = config.tasks.entries
    tasks = []
    for spec in specs:
        entry = entries.get(spec.name)
        options: dict = {}
        techniques = config.tasks.techniques(spec.name)
        if spec.type == "classification":
            distill = techniques["distill"]
            options = {
                "label_smoothing": techniques["label_smoothing"],
                "focal_gamma": techniques["focal_gamma"],
                "distill_alpha": distill.alpha if distill.teacher is not None else 0.0,
                "distill_temperature": distill.temperature,
            }
        task = create_task(spec, metric=entry.metric if entry else None, **options)
        inverse = techniques["instance_weights"] == "inverse_frequency"
        if inverse and spec.type == "classification" and train is not None:
            task.instance_weights = InverseFrequency(_class_counts(train, spec))
        tasks.append(task)
    return tasks


def _class_counts(train: Split | TaskSplits, spec: TaskSpec) -> torch.Tensor:
    """(C,) the labelled training rows of each class of a classification task."""
    split = train if isinstance(train, Split) else train[spec.name]
    target = split.targets[spec.name]
    mask = split.masks.get(spec.name)
    if mask is not None:
        target = target[mask]
    return torch.bincount(target, minlength=spec.num_classes or 0)


def build_model(
    config: ExperimentConfig, input_shape: Sequence[int], tasks: list[Task]
) -> MultiTaskModel:
    """The multi-task network (``model.sharing`` around ``model.backbone``) for inputs of
    per-sample ``input_shape``, initialised from the config's seed without touching the global
    RNG state.

    Raises:
        ConfigError: backbone options it cannot build (e.g. ``hidden: []``), or architecture
            options the trunk cannot take (e.g. ``model.sharing_options.stages`` beyond its
            stages).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.model.preference is not None:  # COSMOS reads a wider input
            family = PREFERENCE_MODELS.get(config.model.preference)
            input_shape = family.inner_input_shape(input_shape, len(tasks))
        try:
            trunk = create_backbone(
                config.model.backbone, input_shape, **config.model.backbone_options
            )
        except ValueError as error:
            raise ConfigError(f"model.backbone_options: {error}") from None
        try:
            heads = {task.name: _head(config, task, trunk) for task in tasks}
        except ValueError as error:
            raise ConfigError(f"model: {error}") from None
        try:
            model = create_model(
                config.model.sharing, trunk, heads, input_shape, **config.model.sharing_options
            )
        except ValueError as error:
            raise ConfigError(f"model.sharing_options.{error}") from None
        if config.model.preference is None:
            return model
        try:
            return wrap_preference(
                config.model.preference, model, **config.model.preference_options
            )
        except ValueError as error:
            raise ConfigError(f"model.preference_options: {error}") from None


def _head(config: ExperimentConfig, task: Task, trunk: torch.nn.Module) -> torch.nn.Module:
    """A task's head on ``trunk``'s features (convolutional for a per-pixel task); temperature-
    scaled when the config gives the task a temperature (``fit``: 1 until fitted on validation
    after training)."""
    try:
        head = task_head(
            trunk.out_features,
            task.output_size,
            config.model.head_hidden,
            per_pixel=task.per_pixel,
            dense_features=is_dense(trunk),
            batch_norm=config.model.head_batch_norm,
        )
    except ValueError as error:
        raise ValueError(f"task {task.name!r}: {error}") from None
    temperature = config.tasks.techniques(task.name)["temperature"]
    if isinstance(task, ClassificationTask) and temperature != 1.0:
        return TemperatureScaled(head, 1.0 if temperature == "fit" else temperature)
    return head


def build_noise(config: ExperimentConfig) -> InputNoise:
    """The training inputs' noise (also the family of the evaluation views)."""
    noise = config.noise
    return InputNoise(noise.gaussian, noise.salt_pepper, noise.shift, noise.per_task)


def build_views(
    config: ExperimentConfig, views: int | None = None, combine: str | None = None
) -> Views | None:
    """The evaluation views of ``config`` (``eval.views``, ``eval.combine``), or the ``views``
    and ``combine`` given instead; ``None`` with one view (the input as it is)."""
    count = config.eval.views if views is None else views
    how = config.eval.combine if combine is None else combine
    if count < 1 or how not in ("vote", "mean"):
        raise ConfigError(
            f"views: give a number of views ≥ 1 (got {count}) and combine 'vote' or 'mean' "
            f"(got {how!r})."
        )
    if count == 1:
        return None
    noise = build_noise(config)
    if not noise.active:
        raise ConfigError(
            f"views: {count} views of an input differ only by noise, and the config sets none; "
            "set noise.gaussian, noise.salt_pepper or noise.shift."
        )
    return Views(noise, count, cast(Combine, how), config.seed)


def build_penalties(
    config: ExperimentConfig, model: MultiTaskModel, balancer: Balancer
) -> ParameterPenalties:
    """The L1/L2 penalties of the trunk, the heads and the balancer."""
    heads = [p for name in model.task_names for p in model.task_parameters(name)]
    groups = dict(
        zip(GROUPS, (list(model.shared_parameters()), heads, list(balancer.parameters())))
    )
    settings = config.regularization
    return ParameterPenalties(
        groups,
        {name: Penalty(getattr(settings, name).l1, getattr(settings, name).l2) for name in GROUPS},
    )


def build_balancer(config: ExperimentConfig, num_tasks: int) -> Balancer:
    """The balancing method with its resolved options (a seeded one follows the run's seed
    unless the config sets its own); for a preference-conditioned model, ``ew`` is the
    preference's scalarisation (:class:`~mtlkit.balancing.preference.PreferenceScalarisation`,
    with COSMOS's ``cosine_weight``)."""
    name = config.balancer.name
    if config.model.preference is not None and name == "ew":
        cosine_weight = config.model.preference_options.get("cosine_weight", 0.0)
        return PreferenceScalarisation(num_tasks, cosine_weight=cosine_weight)
    options = balancer_options(name, config.balancer.options, config.seed)
    return create(name, num_tasks=num_tasks, **options)


def build_optimization(
    config: ExperimentConfig, model: MultiTaskModel, balancer: Balancer
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimizer over the model's and the balancer's parameters, and its schedule."""
    optim = config.optim
    optimizer = create_optimizer(
        optim.name,
        parameter_groups(config, model),
        balancer.parameters(),
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
    )
    schedule = config.schedule
    scheduler = create_scheduler(
        schedule.name,
        optimizer,
        config.train.epochs,
        step_size=schedule.step_size,
        gamma=schedule.gamma,
    )
    return optimizer, scheduler


def parameter_groups(
    config: ExperimentConfig, model: MultiTaskModel
) -> list[torch.nn.Parameter] | list[ParamGroup]:
    """The model's parameters, in groups with their own learning rates when the config sets
    per-task (``optim.task_lr``, ``optim.task_lr_scale``) or per-layer-group
    (``optim.group_lr_scale``) rates; else all of them at ``optim.lr``, in one group.

    Raises:
        ConfigError: a layer group the network does not have, or layer-group rates for a
            network without layer groups.
    """
    optim = config.optim
    if not (optim.task_lr or optim.task_lr_scale or optim.group_lr_scale):
        return list(model.parameters())
    task_lr = dict(optim.task_lr) | {t: optim.lr * s for t, s in optim.task_lr_scale.items()}
    group_lr = {name: optim.lr * scale for name, scale in optim.group_lr_scale.items()}
    try:
        return rate_groups(model, optim.lr, task_lr=task_lr, group_lr=group_lr)
    except ValueError as error:
        raise ConfigError(f"optim.group_lr_scale: {error}") from None


def train_batches(
    config: ExperimentConfig,
    split: Split | TaskSplits,
    epoch: int,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> Iterable[Batch]:
    """The shuffled training batches of one epoch, a function of (seed, epoch) alone: one batch
    per step, or (multi-input) one batch of every task per step, under ``data.epoch`` and
    ``data.mixing``. Across processes each rank takes an equal shard, so every rank runs the same
    steps and step i of N ranks sees the samples of step i of one process at batch N·B."""
    loader: TensorBatches | MultiInputBatches
    if isinstance(split, Split):
        loader = TensorBatches(
            split,
            config.train.batch_size,
            shuffle=True,
            seed=config.seed,
            rank=rank,
            world_size=world_size,
        )
    else:
        loader = MultiInputBatches(
            split,
            config.train.batch_size,
            epoch=config.data.epoch,
            mixing=config.data.mixing,
            seed=config.seed,
            rank=rank,
            world_size=world_size,
        )
    loader.set_epoch(epoch)
    return loader


def eval_batches(
    config: ExperimentConfig,
    split: Split | TaskSplits,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> Iterable[Batch]:
    """The batches of a split in order, for evaluation (multi-input: task after task). Across
    processes each rank takes every N-th sample, so that every sample is served exactly once."""
    shards = {"rank": rank, "world_size": world_size}
    if isinstance(split, Split):
        return TensorBatches(split, config.train.eval_batch_size, even_shards=False, **shards)
    return TaskByTaskBatches(split, config.train.eval_batch_size, **shards)
