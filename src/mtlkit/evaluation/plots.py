"""The figures of the reports, drawn with matplotlib's object API (no pyplot, no global state)
and returned as PNG bytes for :class:`~mtlkit.evaluation.document.Figure`.

Every function takes plain numbers, so it can be used on any run's ``metrics.json``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from mtlkit.evaluation.document import Block, Figure, Heading, Paragraph
from mtlkit.evaluation.maps import MapSamples, maps_png
from mtlkit.tasks.metrics import ClassificationReport

_DPI = 100


class EpochPoint(Protocol):
    """What the learning curves read of one epoch (e.g. a
    :class:`~mtlkit.training.EpochRecord`)."""

    @property
    def epoch(self) -> int: ...

    @property
    def train_loss(self) -> Mapping[str, float]: ...

    @property
    def val(self) -> Mapping[str, Mapping[str, float]] | None: ...

    @property
    def task_weights(self) -> Mapping[str, float] | None: ...


class CosinePoint(Protocol):
    """What the cosine plot reads of one recorded step (e.g. a
    :class:`~mtlkit.training.CosineSample`)."""

    @property
    def step(self) -> int: ...

    @property
    def cosines(self) -> Mapping[str, float]: ...


def _png(figure: MplFigure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def axes_png(axes: Any) -> bytes:
    """The PNG of the figure that holds ``axes`` (e.g. one of Optuna's matplotlib plots)."""
    import matplotlib.pyplot as plt

    figure = axes.figure
    figure.set_layout_engine("constrained")
    try:
        return _png(figure)
    finally:
        plt.close(figure)


def learning_curves_png(records: Sequence[EpochPoint], metrics: Mapping[str, str]) -> bytes:
    """Per task, by epoch: the mean training loss (log scale), the validation metric
    (``metrics[task]``, when there is validation) and the task weight the balancer applied."""
    tasks = list(records[0].train_loss)
    epochs = [record.epoch for record in records]
    has_val = records[0].val is not None
    has_weights = records[0].task_weights is not None
    panels = 1 + has_val + has_weights
    figure = MplFigure(figsize=(4.0 * panels, 3.2), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for task in tasks:
        axes[0].plot(epochs, [r.train_loss[task] for r in records], marker="o", label=task)
    axes[0].set(title="training loss", xlabel="epoch", yscale="log")
    plain = FuncFormatter(lambda value, _: f"{value:.3g}")
    axes[0].yaxis.set_major_formatter(plain)
    axes[0].yaxis.set_minor_formatter(plain)
    panel = 1
    if has_val:
        for task in tasks:
            values = [(r.val or {})[task].get(metrics[task], math.nan) for r in records]
            axes[panel].plot(epochs, values, marker="o", label=task)
        names = sorted(set(metrics.values()))
        axes[panel].set(title=f"validation {', '.join(names)}", xlabel="epoch")
        panel += 1
    if has_weights:
        for task in tasks:
            axes[panel].plot(
                epochs, [(r.task_weights or {})[task] for r in records], marker="o", label=task
            )
        axes[panel].set(title="task weight applied (epoch mean)", xlabel="epoch")
    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    return _png(figure)


def cosine_png(samples: Sequence[CosinePoint]) -> bytes:
    """The cosine between each pair of task gradients on the shared parameters, by step."""
    figure = MplFigure(figsize=(8.0, 3.2), layout="constrained")
    axis = figure.subplots()
    steps = [sample.step for sample in samples]
    for pair in samples[0].cosines:
        axis.plot(steps, [s.cosines[pair] for s in samples], marker=".", label=pair)
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set(xlabel="step", ylabel="cos(∇Lᵢ, ∇Lⱼ)", ylim=(-1.05, 1.05))
    axis.set_title("task-gradient cosine on the shared parameters (< 0: conflict)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return _png(figure)


def confusion_png(task: str, report: ClassificationReport) -> bytes:
    """The confusion matrix as a heat map of row-normalised rates (each true class's share of
    predictions), the diagonal — each class's TPR — printed in its cells."""
    size = report.num_classes
    rates = [
        [count / support if support else math.nan for count in row]
        for row, support in zip(report.confusion_matrix, report.support)
    ]
    side = max(3.5, 0.45 * size + 1.5)
    figure = MplFigure(figsize=(side + 1.0, side), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for i, value in enumerate(row[i] for i, row in enumerate(rates)):
        if not math.isnan(value):
            color = "white" if value > 0.6 else "black"
            axis.text(i, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    axis.set(xticks=range(size), yticks=range(size), xlabel="predicted", ylabel="true")
    axis.set_title(f"{task}: confusion (row-normalised), accuracy {report.accuracy:.4f}")
    figure.colorbar(image, ax=axis, shrink=0.8)
    return _png(figure)


def heatmap_png(
    matrix: Sequence[Sequence[float]],
    labels: Sequence[str],
    *,
    title: str,
    row_label: str,
    column_label: str,
) -> bytes:
    """A K×K heat map on a diverging scale centred on 0, the value printed in each cell."""
    size = len(labels)
    finite = [abs(v) for row in matrix for v in row if math.isfinite(v)]
    bound = max(finite, default=1.0) or 1.0
    side = max(3.5, 0.9 * size + 1.5)
    figure = MplFigure(figsize=(side + 1.2, side), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound)
    for i in range(size):
        for j in range(size):
            value = matrix[i][j]
            if math.isfinite(value):
                color = "white" if abs(value) > 0.6 * bound else "black"
                axis.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=8, color=color)
    axis.set_xticks(range(size), labels, rotation=30, ha="right")
    axis.set_yticks(range(size), labels)
    axis.set(xlabel=column_label, ylabel=row_label)
    axis.set_title(title)
    figure.colorbar(image, ax=axis, shrink=0.8)
    return _png(figure)


def interval_png(
    labels: Sequence[str], means: Sequence[float], half_widths: Sequence[float], *, title: str
) -> bytes:
    """One horizontal bar per label with its error bar (NaN half-width: none), a line at 0."""
    figure = MplFigure(figsize=(7.0, 0.45 * len(labels) + 1.2), layout="constrained")
    axis = figure.subplots()
    errors = [0.0 if math.isnan(h) else h for h in half_widths]
    positions = list(range(len(labels)))
    colors = ["tab:green" if m > 0 else "tab:red" for m in means]
    axis.barh(positions, means, xerr=errors, color=colors, alpha=0.7, capsize=4)
    axis.set_yticks(positions, labels)
    axis.invert_yaxis()
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_title(title)
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def tradeoff_png(
    groups: Mapping[str, Sequence[Sequence[float]]],
    front: Sequence[Sequence[float]],
    references: Mapping[str, Sequence[float]],
    axis_labels: Sequence[str],
    *,
    title: str,
) -> bytes:
    """Points of a trade-off sweep in the plane of each pair of objectives: every point by group
    (method), the non-dominated front joined, and the reference points (single-task) marked."""
    dims = len(axis_labels)
    pairs = [(i, j) for i in range(dims) for j in range(i + 1, dims)]
    figure = MplFigure(figsize=(4.6 * len(pairs), 4.2), layout="constrained")
    axes = figure.subplots(1, len(pairs), squeeze=False)[0]
    markers = "osD^v<>"
    for axis, (i, j) in zip(axes, pairs):
        for index, (name, points) in enumerate(groups.items()):
            axis.scatter(
                [p[i] for p in points],
                [p[j] for p in points],
                marker=markers[index % len(markers)],
                alpha=0.75,
                label=name,
            )
        ordered = sorted(front, key=lambda p: p[i])
        axis.plot(
            [p[i] for p in ordered],
            [p[j] for p in ordered],
            color="black",
            linewidth=1.0,
            label="non-dominated",
        )
        for name, point in references.items():
            axis.scatter(
                [point[i]],
                [point[j]],
                marker="*",
                s=180,
                color="gold",
                edgecolor="black",
                label=name,
                zorder=5,
            )
        axis.set(xlabel=axis_labels[i], ylabel=axis_labels[j])
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle(title)
    return _png(figure)


class RunFigures:
    """The figures of one run's report: its learning curves and task weights, its gradient
    cosines (when recorded) and a confusion heat map per task.

    Args:
        records: the run's epoch records.
        cosines: the recorded task-gradient cosines (empty: not recorded).
        metrics: the validation metric to plot per task (its primary metric).
        maps: a few test images' per-pixel targets and predictions (``None``: no such task).
    """

    def __init__(
        self,
        records: Sequence[EpochPoint],
        cosines: Sequence[CosinePoint],
        metrics: Mapping[str, str],
        *,
        maps: MapSamples | None = None,
    ) -> None:
        self.records = list(records)
        self.cosines = list(cosines)
        self.metrics = dict(metrics)
        self.maps = maps

    def map_blocks(self) -> list[Block]:
        """The "Predicted maps" section: each sample's input, then every per-pixel task's
        target beside its prediction (none without per-pixel tasks)."""
        if self.maps is None:
            return []
        caption = (
            f"the first {len(self.maps.inputs)} test images: input, then per task the target "
            "and the prediction (black: void or invalid pixels)"
        )
        return [Heading("Predicted maps"), Figure(maps_png(self.maps), caption)]

    def training_blocks(self) -> list[Block]:
        """The "Training" section: learning curves with task weights, then gradient cosines."""
        blocks: list[Block] = [
            Heading("Training"),
            Figure(
                learning_curves_png(self.records, self.metrics),
                "training loss, validation metric and applied task weight per task, by epoch",
            ),
        ]
        if self.cosines:
            caption = "cosine between the task gradients on the shared parameters, by step"
            blocks.append(Figure(cosine_png(self.cosines), caption))
        elif len(self.metrics) > 1:
            blocks.append(
                Paragraph(
                    "Task-gradient cosines were not recorded: set "
                    "`train.log_task_cosine_every: N` to record them every N steps (K extra "
                    "backward passes on those steps)."
                )
            )
        return blocks

    def confusion_block(self, task: str, report: ClassificationReport) -> Figure:
        """The confusion heat map of ``task``."""
        return Figure(confusion_png(task, report), f"{task}: confusion matrix, row-normalised")
