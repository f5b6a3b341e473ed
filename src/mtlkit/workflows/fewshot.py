"""Few-shot transfer: how well a trained trunk serves a new classification task from N labelled
examples per class — its features read by a new head (or a new head and the trunk's last stage,
trained), over several draws of the N examples, against other trunks (a single-task run's) and
a random initialisation of the same network.

Each draw picks, per class, a random permutation of that class's labelled training examples and
takes its first N: the draws are the same for every trunk (paired), and a draw's 1-shot examples
are among its 5-shot ones. The frozen part of a trunk runs once per trunk in inference mode; only
the head (and the last stage) is trained, full batch, with Adam, from an initialisation seeded
by the draw. The score is the task's primary metric (accuracy) on its whole test split, reported
as the mean over draws with a 95 % Student-t confidence interval.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from mtlkit.config import ConfigError, ExperimentConfig, derive_config
from mtlkit.data import Split
from mtlkit.evaluation.stats import MeanCI, mean_ci
from mtlkit.models import MultiTaskModel, classification_head, layer_groups
from mtlkit.tasks import ClassificationTask
from mtlkit.workflows.build import build_model, build_tasks, load_data
from mtlkit.workflows.restore import restore_run
from mtlkit.workflows.run_dir import RunDir
from mtlkit.workflows.transfer import require_layer_groups

Tune = Literal["head", "last"]
"""What few-shot training updates: a new head on the frozen trunk, or the head and the trunk's
last stage."""
TUNES: tuple[str, ...] = ("head", "last")


@dataclass(frozen=True)
class FewShotRow:
    """One trunk at one number of shots: the score of each draw and their mean with its CI."""

    trunk: str
    shots: int
    scores: tuple[float, ...]
    summary: MeanCI


@dataclass(frozen=True)
class FewShotResult:
    """The few-shot table of one task: every trunk at every number of shots."""

    task: str
    metric: str
    tune: str
    rows: tuple[FewShotRow, ...]

    def table(self) -> str:
        """The table as text: one row per trunk, one column per number of shots."""
        shots = sorted({row.shots for row in self.rows})
        trunks = list(dict.fromkeys(row.trunk for row in self.rows))
        cells = {(row.trunk, row.shots): row.summary.format(4) for row in self.rows}
        header = ["trunk", *(f"{n}-shot {self.metric}" for n in shots)]
        body = [[trunk, *(cells[trunk, n] for n in shots)] for trunk in trunks]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        lines = [
            " | ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
            for line in [header, *body]
        ]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain values (JSON)."""
        return {
            "task": self.task,
            "metric": self.metric,
            "tune": self.tune,
            "rows": [
                {
                    "trunk": row.trunk,
                    "shots": row.shots,
                    "scores": list(row.scores),
                    "mean": row.summary.mean,
                    "ci95": row.summary.half_width,
                }
                for row in self.rows
            ],
        }


def trunk_runs(run_dir: str | Path) -> dict[str, Path]:
    """The trained runs whose trunks a few-shot study compares: the run itself, or, for the
    folder of ``mtlkit baselines``, its multi-task run and each single-task run, by name."""
    path = Path(run_dir)
    if (path / "multi-task" / "config.yaml").is_file():
        singles = sorted(p for p in path.glob("single-*") if (p / "config.yaml").is_file())
        return {"multi-task": path / "multi-task"} | {p.name: p for p in singles}
    return {path.name: path}


def fewshot(
    run_dir: str | Path,
    task: str,
    shots: Sequence[int] = (1, 5, 10, 50),
    draws: int = 10,
    *,
    others: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    tune: Tune = "head",
    steps: int = 100,
    lr: float = 0.01,
    random_trunk: bool = True,
    device: str = "cpu",
) -> FewShotResult:
    """Few-shot scores of ``task`` for the trunks of ``run_dir`` (see :func:`trunk_runs`), of
    ``others`` and, with ``random_trunk``, of the run's network freshly initialised.

    Args:
        run_dir: a trained run, or a folder of ``mtlkit baselines``.
        task: a classification task of the data: the run's config, every task of its data
            included, changed by ``overrides`` (e.g. ``data.benchmark=mnist+fashion``); the task
            may be one the run never saw.
        shots: the numbers N of labelled training examples per class.
        draws: how many random draws of the N examples.
        others: more trained runs whose trunks to compare.
        overrides: ``key=value`` changes of the run's config that select the data.
        tune: ``head`` (a new head on the frozen trunk) or ``last`` (the head and the trunk's
            last stage).
        steps: full-batch Adam steps per draw.
        lr: Adam's learning rate.
        random_trunk: add the run's network at its initialisation (seeded by the config's seed).
        device: where to compute.

    Raises:
        ConfigError: a task the data lacks or that is not a classification, a bad shot or draw
            count, too few labelled examples of a class, a trunk of another input shape, a run
            whose network has no layer groups (soft sharing).
    """
    if tune not in TUNES:
        raise ConfigError(f"--tune: {tune!r} is not one of: {', '.join(TUNES)}.")
    if not shots or min(shots) < 1 or draws < 1 or steps < 1:
        raise ConfigError(
            f"--shots {list(shots)} and --draws {draws}: give positive numbers of examples per "
            "class and of draws."
        )
    runs = trunk_runs(run_dir) | {Path(p).name: Path(p) for p in others}
    for path in runs.values():
        require_layer_groups(RunDir(path).read_config(), path, "few-shot transfer")
    first = next(iter(runs.values()))
    # every task of the data, not only those the run trained (``tasks.include``)
    config, _ = derive_config(RunDir(first).read_config(), None, ["tasks.include=null", *overrides])
    data = load_data(config)
    spec = next((s for s in data.tasks if s.name == task), None)
    if spec is None:
        raise ConfigError(
            f"--task {task}: the data has tasks {', '.join(s.name for s in data.tasks)}; choose "
            "one, or other data with --set (e.g. data.benchmark=mnist+fashion)."
        )
    target = build_tasks(config, [spec])[0]
    if not isinstance(target, ClassificationTask):
        raise ConfigError(f"--task {task}: few-shot learning needs a classification task.")
    train, test = _task_split(data.train, task), _task_split(data.test, task)
    chosen = _draws(train, task, target.num_classes, max(shots), draws, config.seed)
    used = torch.unique(torch.cat(chosen))
    target_device = torch.device(device)

    trunks: dict[str, MultiTaskModel] = {}
    for name, path in runs.items():
        run = restore_run(path, "cpu")
        if tuple(run.folder.read_preprocessing().input_shape) != tuple(data.input_shape):
            raise ConfigError(
                f"{path}: its trunk reads inputs of shape "
                f"{tuple(run.folder.read_preprocessing().input_shape)}, the data's are "
                f"{tuple(data.input_shape)}."
            )
        trunks[name] = run.model
    if random_trunk:
        trunks["random init"] = build_model(
            config, data.input_shape, build_tasks(config, data.tasks)
        )

    rows = []
    for name, model in trunks.items():
        frozen, tuned = _split_trunk(model, tune)
        frozen.to(target_device).eval()
        with torch.no_grad():
            picked = _encode(frozen, train.inputs[used], target_device)
            test_features = _encode(frozen, test.inputs, target_device)
        position = {int(index): row for row, index in enumerate(used)}
        for n in shots:
            scores = []
            for draw, order in enumerate(chosen):
                rows_of_draw = order.view(target.num_classes, -1)[:, :n].reshape(-1)
                index = torch.tensor([position[int(i)] for i in rows_of_draw])
                train_features = picked[index]
                labels = train.targets[task][rows_of_draw].to(target_device)
                scores.append(
                    _train_and_score(
                        target,
                        tuned,
                        model,
                        config,
                        train_features,
                        labels,
                        test_features,
                        test,
                        seed=config.seed * 1_000 + draw,
                        steps=steps,
                        lr=lr,
                    )
                )
            rows.append(FewShotRow(name, n, tuple(scores), mean_ci(scores)))
    return FewShotResult(task, target.primary_metric, tune, tuple(rows))


def _task_split(split: Split | dict[str, Split], task: str) -> Split:
    """The split that holds ``task``'s inputs (one dataset per task: the task's own)."""
    return split[task] if isinstance(split, dict) else split


def _draws(split: Split, task: str, classes: int, most: int, draws: int, seed: int) -> list[Tensor]:
    """Per draw, ``most`` training rows of each class, class after class (a ``(classes·most,)``
    index tensor whose first N per class are the draw's N-shot examples)."""
    labels = split.targets[task]
    labelled = split.masks.get(task, torch.ones(len(labels), dtype=torch.bool))
    pools = [torch.nonzero(labelled & (labels == c)).flatten() for c in range(classes)]
    for c, pool in enumerate(pools):
        if len(pool) < most:
            raise ConfigError(
                f"--shots {most}: class {c} of task {task!r} has only {len(pool)} labelled "
                "training example(s); ask for fewer shots."
            )
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.cat([pool[torch.randperm(len(pool), generator=generator)[:most]] for pool in pools])
        for _ in range(draws)
    ]


def _split_trunk(model: MultiTaskModel, tune: Tune) -> tuple[nn.Module, nn.Module]:
    """The trunk's frozen part and the part few-shot training updates (empty for ``head``)."""
    stages = [modules for name, modules in layer_groups(model).items() if name != "heads"]
    if tune == "head":
        return nn.Sequential(*(m for stage in stages for m in stage)), nn.Sequential()
    if len(stages) < 2:
        raise ConfigError("--tune last: the trunk has one stage; tune the head only.")
    frozen = nn.Sequential(*(m for stage in stages[:-1] for m in stage))
    return frozen, nn.Sequential(*stages[-1])


def _encode(frozen: nn.Module, inputs: Tensor, device: torch.device) -> Tensor:
    """``frozen`` applied to ``inputs`` in batches of 1024."""
    return torch.cat([frozen(part.to(device)) for part in inputs.split(1024)])


def _train_and_score(
    task: ClassificationTask,
    tuned: nn.Module,
    model: MultiTaskModel,
    config: ExperimentConfig,
    train_features: Tensor,
    labels: Tensor,
    test_features: Tensor,
    test: Split,
    *,
    seed: int,
    steps: int,
    lr: float,
) -> float:
    """Train a new head (after a copy of ``tuned``) on the draw; its primary test metric."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        width = _width(model)
        head = classification_head(
            width,
            task.num_classes,
            config.model.head_hidden,
            batch_norm=config.model.head_batch_norm,
        )
    network = nn.Sequential(copy.deepcopy(tuned), head).to(train_features.device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        task.loss(network(train_features), labels).backward()
        optimizer.step()
    network.eval()
    metrics = task.metrics().to(test_features.device)
    with torch.no_grad():
        for features, targets, index in zip(
            test_features.split(4096),
            test.targets[task.name].split(4096),
            torch.arange(len(test)).split(4096),
        ):
            mask = test.masks.get(task.name)
            metrics.update(
                network(features),
                targets.to(features.device),
                None if mask is None else mask[index].to(features.device),
            )
    return float(getattr(metrics.compute(), task.primary_metric))


def _width(model: MultiTaskModel) -> int:
    """The width of the trunk's features."""
    return int(model.trunk.out_features)
