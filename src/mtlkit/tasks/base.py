"""The task interface: what one head predicts, how its loss is computed, how it is scored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import Tensor

from mtlkit.tasks.metrics import higher_is_better


class TaskMetrics(Protocol):
    """A metric accumulator: add batches with ``update``, read the result with ``compute``."""

    def to(self, device: Any) -> TaskMetrics:
        """Move the accumulated state to ``device``; returns ``self``."""

    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch (rows where ``mask`` is False are left out)."""

    def compute(self) -> Any:
        """The task's report over everything added; it has the task's ``primary_metric``."""


InstanceWeights = Callable[[Tensor, Tensor], Tensor]
"""``weights(output, target) -> (N,)`` non-negative per-row weights of a batch (the output is
detached): a user's own scheme, or a built-in one such as
:class:`~mtlkit.tasks.weighting.InverseFrequency`."""

Combine = Literal["vote", "mean"]
"""How several views' outputs of one input become one: majority vote or mean probability."""


def masked_mean(per_row: Tensor, mask: Tensor | None, weights: Tensor | None = None) -> Tensor:
    """The mean of the (N,) ``per_row`` losses over the rows where ``mask`` is True (all rows
    without a mask); 0, still on the graph, when no row is labelled.

    The other rows contribute exactly nothing, their gradient included, whatever they hold
    (``torch.where`` passes a zero gradient to the branch it does not take). With (N,)
    ``weights``, the weighted mean ``Σ wᵢ·lᵢ / Σ wᵢ`` over those rows (0 when the weights sum
    to 0).
    """
    if weights is None:
        if mask is None:
            return per_row.mean()
        return torch.where(mask, per_row, 0.0).sum() / mask.sum().clamp(min=1)
    if weights.shape != per_row.shape:
        raise ValueError(
            f"instance weights must be one per row, shape {tuple(per_row.shape)}; got "
            f"{tuple(weights.shape)}."
        )
    weights = weights.to(per_row.dtype)
    if mask is not None:
        weights = torch.where(mask, weights, 0.0)
        per_row = torch.where(mask, per_row, 0.0)
    total = weights.sum()
    return (weights * per_row).sum() / torch.where(total > 0, total, 1.0)


def combine_sigmoid_views(outputs: Tensor, how: Combine) -> Tensor:
    """Logits whose sigmoid is, per output, the share of the M views above 0.5 (``vote``) or
    the views' mean probability (``mean``), from (M, N, ...) logits."""
    probability = torch.sigmoid(outputs.float())
    if how == "vote":
        probability = (probability > 0.5).float()
    return torch.logit(probability.mean(dim=0))


class Task(ABC):
    """One task of a multi-task model.

    Attributes:
        name: the task's name; the key of its head, its targets and its metrics.
        primary_metric: the metric that model selection and comparisons read; its direction
            (:attr:`higher_is_better`) comes from :data:`mtlkit.tasks.metrics.METRIC_DIRECTIONS`.

    Evaluating over several noisy views of each input (``eval.views`` > 1) also needs
    ``combine_views(outputs, how)``: one output per row from the (M, N, ...) outputs of M views,
    shaped like one view's output, with ``how`` ``"vote"`` (each view votes for its prediction)
    or ``"mean"`` (the mean probability). Every built-in type has it; a task class of one's own
    needs it only for views (:meth:`mtlkit.measure.views.Views.check` refuses it otherwise).
    """

    name: str
    primary_metric: str
    instance_weights: InstanceWeights | None = None
    """Per-row loss weights computed from each batch (``None``: every row weighs the same)."""
    per_pixel: ClassVar[bool] = False
    """Whether the task predicts a map per input ((N, C, H, W) outputs, a dense trunk and a
    convolutional head), not one output per row."""

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger :attr:`primary_metric` is better."""
        return higher_is_better(self.primary_metric)

    def selection_value(self, report: Any) -> float:
        """The primary metric of ``report`` signed so that higher is better, on a scale that
        can be averaged with other tasks' (model selection averages it over tasks)."""
        value = float(getattr(report, self.primary_metric))
        return value if self.higher_is_better else -value

    @property
    @abstractmethod
    def output_size(self) -> int:
        """The number of outputs the task's head must produce."""

    @abstractmethod
    def loss(
        self,
        output: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
        *,
        weights: Tensor | None = None,
        teacher: Tensor | None = None,
    ) -> Tensor:
        """The scalar loss of a batch of head outputs against targets.

        ``mask`` ((N,) bool, True where the label is present) leaves the other rows out: the loss
        is the mean over the labelled rows, and 0 (still attached to the graph) when there are
        none. ``None``: every row is labelled. ``weights`` ((N,), else :attr:`instance_weights`
        when set) makes it the weighted mean of the per-row losses. ``teacher``: a teacher's
        outputs for the batch, for the tasks that learn from soft labels (distillation).
        """

    def reduce(
        self,
        per_row: Tensor,
        output: Tensor,
        target: Tensor,
        mask: Tensor | None,
        weights: Tensor | None,
    ) -> Tensor:
        """The task loss from its (N,) per-row losses: the (weighted) mean over labelled rows,
        the weights given or else drawn from :attr:`instance_weights`."""
        if weights is None and self.instance_weights is not None:
            weights = self.instance_weights(output.detach(), target)
        return masked_mean(per_row, mask, weights)

    def refuse_teacher(self, teacher: Tensor | None) -> None:
        """Raise when a teacher is given to a task that does not learn from soft labels."""
        if teacher is not None:
            raise ValueError(
                f"task {self.name!r}: only classification tasks learn from a teacher's soft "
                "labels (distillation)."
            )

    @abstractmethod
    def metrics(self) -> TaskMetrics:
        """A fresh metric accumulator for this task."""

    @abstractmethod
    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """What the head's outputs mean, as columns of a prediction table (one value per row).

        The key ``"pred"`` holds the prediction (a class name, labels, a value); other keys
        (``"prob"``, …) hold probabilities. ``mtlkit predict`` writes ``<task>_<key>`` columns.
        """
