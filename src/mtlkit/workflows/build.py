"""The parts of a run, built from a validated configuration.

Each builder reads the config and the registries, nothing else; the workflows (train,
baselines, evaluate, …) assemble them. The config was checked when it was parsed, so nothing
here validates it again.
"""

from __future__ import annotations

import torch

from mtlkit.balancing import Balancer, create
from mtlkit.config import ConfigError, ExperimentConfig
from mtlkit.data import MultiTaskData, Split, TensorBatches, load_benchmark
from mtlkit.models import HardSharing, MultiTaskModel, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask, Task
from mtlkit.training import create_optimizer, create_scheduler


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


def load_data(config: ExperimentConfig) -> MultiTaskData:
    """The benchmark the config names, restricted to ``tasks.include`` when given."""
    data = load_benchmark(
        config.data.benchmark,
        protocol=config.data.protocol,
        seed=config.seed,
        val_fraction=config.data.val_fraction,
        limit=config.data.limit,
        data_dir=config.data.data_dir,
    )
    include = config.tasks.include
    return data if include is None else data.subset(include)


def build_tasks(config: ExperimentConfig, data: MultiTaskData) -> list[Task]:
    """One classification task per task of the data."""
    return [
        ClassificationTask(spec.name, spec.num_classes, config.tasks.label_smoothing)
        for spec in data.tasks
    ]


def build_model(config: ExperimentConfig, data: MultiTaskData, tasks: list[Task]) -> MultiTaskModel:
    """The shared network for the data's input shape, initialised from the config's seed without
    touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        trunk = create_backbone(config.model.backbone, data.train.inputs.shape[1:])
        heads = {
            task.name: classification_head(
                trunk.out_features, task.output_size, config.model.head_hidden
            )
            for task in tasks
        }
        return HardSharing(trunk, heads)


def build_balancer(config: ExperimentConfig, num_tasks: int) -> Balancer:
    """The balancing method with its resolved options."""
    return create(config.balancer.name, num_tasks=num_tasks, **config.balancer.options)


def build_optimization(
    config: ExperimentConfig, model: MultiTaskModel, balancer: Balancer
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimizer over the model's and the balancer's parameters, and its schedule."""
    optim = config.optim
    optimizer = create_optimizer(
        optim.name,
        model.parameters(),
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


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> TensorBatches:
    """The batches of a split for one epoch; the order is a function of (seed, epoch) alone.

    Across processes, shuffled (training) batches come from equal shards, so every rank runs the
    same steps; unshuffled (evaluation) batches serve every sample exactly once.
    """
    loader = TensorBatches(
        split,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=False,
        rank=rank,
        world_size=world_size,
        even_shards=shuffle,
    )
    loader.set_epoch(epoch)
    return loader
