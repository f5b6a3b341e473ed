"""Per-task classification metrics, exact from an accumulated confusion matrix.

:class:`ClassificationMetrics` keeps one torchmetrics ``MulticlassConfusionMatrix`` as its only
state, so it accumulates over any number of batches and, under ``torch.distributed``, sums the
matrices of every process when :meth:`ClassificationMetrics.compute` is called. Every rate in
:class:`ClassificationReport` is derived exactly from that matrix.

Undefined values: a rate whose denominator is zero (PPV of a class that is never predicted, TPR of
a class with no samples, ...) is ``float('nan')``, written as ``null`` by
:meth:`ClassificationReport.to_dict`. Macro averages skip undefined classes: ``macro_accuracy``
averages the TPR of the classes that occur in the targets, ``macro_f1`` the F1 of the classes that
occur in the targets or the predictions. They are NaN only when no class is defined.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassCalibrationError, MulticlassConfusionMatrix

METRIC_DIRECTIONS: Mapping[str, bool] = MappingProxyType(
    {
        "accuracy": True,
        "macro_accuracy": True,
        "micro_f1": True,
        "macro_f1": True,
        "tpr": True,
        "tnr": True,
        "ppv": True,
        "npv": True,
        "fpr": False,
        "loss": False,
        "auroc": True,
        "f1": True,
        "precision": True,
        "recall": True,
        "map": True,
        "mae": False,
        "mse": False,
        "rmse": False,
        "r2": True,
        "ece": False,
        "miou": True,
        "pixel_accuracy": True,
        "abs_err": False,
        "rel_err": False,
        "mean_angle": False,
        "median_angle": False,
        "within_11_25": True,
        "within_22_5": True,
        "within_30": True,
    }
)
"""Whether a larger value is better, per metric name (read-only)."""

_UNLABELLED = -1
"""The target the confusion matrix ignores: rows whose label is missing."""

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error."""


def higher_is_better(metric: str) -> bool:
    """Return whether a larger value of ``metric`` is better (``False`` for ``fpr`` and ``loss``).

    Raises:
        ValueError: ``metric`` is not in :data:`METRIC_DIRECTIONS`.
    """
    try:
        return METRIC_DIRECTIONS[metric]
    except KeyError:
        known = ", ".join(sorted(METRIC_DIRECTIONS))
        raise ValueError(f"metric {metric!r} has no known direction: use one of {known}.") from None


class ScalarSummary:
    """A report whose scalar metrics are the attributes named in ``SUMMARY``, in that order."""

    SUMMARY: ClassVar[tuple[str, ...]]

    def summary(self) -> dict[str, float]:
        """The scalar metrics, for logs and tables."""
        return {name: getattr(self, name) for name in self.SUMMARY}

    def _json(self, **details: object) -> dict[str, object]:
        """The scalar metrics (NaN as ``None``, JSON ``null``) followed by ``details``."""
        return {**{name: json_float(value) for name, value in self.summary().items()}, **details}


@dataclass(frozen=True)
class ClassificationReport(ScalarSummary):
    """The metrics of one classification task; per-class lists are indexed by class.

    Attributes:
        accuracy: fraction of samples classified correctly (micro accuracy).
        macro_accuracy: mean TPR over the classes present in the targets (balanced accuracy).
        micro_f1: F1 from the summed counts of all classes; equals ``accuracy`` for single-label
            multi-class data.
        macro_f1: mean per-class F1 over the classes present in the targets or predictions.
        confusion_matrix: C×C counts, rows are true classes and columns predicted classes.
        tpr: per-class recall (sensitivity), TP / (TP + FN).
        tnr: per-class specificity, TN / (TN + FP).
        ppv: per-class precision, TP / (TP + FP).
        npv: per-class negative predictive value, TN / (TN + FN).
        fpr: per-class false-positive rate, FP / (FP + TN).
        support: per-class number of samples in the targets.
        ece: expected calibration error over 15 equal-width bins of the top-class confidence,
            ``Σ_b |B_b|/N · |accuracy(B_b) − confidence(B_b)|``; NaN when only class
            predictions (no scores) were given.
    """

    accuracy: float
    macro_accuracy: float
    micro_f1: float
    macro_f1: float
    confusion_matrix: list[list[int]]
    tpr: list[float]
    tnr: list[float]
    ppv: list[float]
    npv: list[float]
    fpr: list[float]
    support: list[int]
    ece: float = math.nan
    SUMMARY: ClassVar[tuple[str, ...]] = (
        "accuracy",
        "macro_accuracy",
        "micro_f1",
        "macro_f1",
        "ece",
    )

    @classmethod
    def from_confusion_matrix(
        cls, confusion_matrix: Tensor, ece: float = math.nan
    ) -> ClassificationReport:
        """Derive every metric from a C×C confusion matrix (rows true, columns predicted);
        ``ece`` is taken as given.

        Raises:
            ValueError: ``confusion_matrix`` is not square with at least 2 classes.
        """
        if confusion_matrix.dim() != 2 or confusion_matrix.shape[0] != confusion_matrix.shape[1]:
            raise ValueError(
                f"confusion_matrix must be square (C, C), got {tuple(confusion_matrix.shape)}."
            )
        if confusion_matrix.shape[0] < 2:
            raise ValueError("confusion_matrix must cover at least 2 classes.")
        matrix = [[int(v) for v in row] for row in confusion_matrix.tolist()]
        total = sum(map(sum, matrix))
        tp = [matrix[c][c] for c in range(len(matrix))]
        support = [sum(row) for row in matrix]
        predicted = [sum(col) for col in zip(*matrix)]
        fn = [s - t for s, t in zip(support, tp)]
        fp = [p - t for p, t in zip(predicted, tp)]
        tn = [total - t - p - n for t, p, n in zip(tp, fp, fn)]
        f1 = [ratio(2 * t, 2 * t + p + n) for t, p, n in zip(tp, fp, fn)]
        tpr = [ratio(t, t + n) for t, n in zip(tp, fn)]
        return cls(
            accuracy=ratio(sum(tp), total),
            macro_accuracy=nanmean(tpr),
            micro_f1=ratio(2 * sum(tp), 2 * sum(tp) + sum(fp) + sum(fn)),
            macro_f1=nanmean(f1),
            confusion_matrix=matrix,
            tpr=tpr,
            tnr=[ratio(t, t + p) for t, p in zip(tn, fp)],
            ppv=[ratio(t, t + p) for t, p in zip(tp, fp)],
            npv=[ratio(t, t + n) for t, n in zip(tn, fn)],
            fpr=[ratio(p, p + t) for p, t in zip(fp, tn)],
            support=support,
            ece=ece,
        )

    @property
    def num_classes(self) -> int:
        """The number of classes C."""
        return len(self.support)

    @property
    def num_samples(self) -> int:
        """The number of labelled samples scored."""
        return sum(self.support)

    def to_dict(self) -> dict[str, object]:
        """Every field as plain Python values, NaN replaced by ``None`` (JSON ``null``)."""
        return self._json(
            confusion_matrix=[list(row) for row in self.confusion_matrix],
            tpr=[json_float(v) for v in self.tpr],
            tnr=[json_float(v) for v in self.tnr],
            ppv=[json_float(v) for v in self.ppv],
            npv=[json_float(v) for v in self.npv],
            fpr=[json_float(v) for v in self.fpr],
            support=list(self.support),
        )


class ClassificationMetrics:
    """Accumulates predictions of one ``num_classes``-way classification task over batches.

    The state is a torchmetrics ``MulticlassConfusionMatrix`` and, for scores, its
    ``MulticlassCalibrationError`` (ECE); under ``torch.distributed`` the states of all processes
    are reduced in :meth:`compute` (a collective every process must join), unless ``sync`` is
    False: then this process's alone (one process scoring data it holds whole). Inputs must live
    on :attr:`device` (move the metric with :meth:`to`).
    """

    def __init__(self, num_classes: int, *, sync: bool = True) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        self.num_classes = num_classes
        self._confmat = MulticlassConfusionMatrix(
            num_classes, ignore_index=_UNLABELLED, validate_args=False, sync_on_compute=sync
        )
        self._calibration = MulticlassCalibrationError(
            num_classes,
            n_bins=ECE_BINS,
            norm="l1",
            ignore_index=_UNLABELLED,
            validate_args=False,
            sync_on_compute=sync,
        )
        self._scored = False

    @property
    def device(self) -> torch.device:
        """The device the accumulated state lives on."""
        return self._confmat.device

    def to(self, device: torch.device | str) -> ClassificationMetrics:
        """Move the accumulated state to ``device``; returns ``self``."""
        self._confmat.to(device)
        self._calibration.to(device)
        return self

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._confmat.reset()
        self._calibration.reset()
        self._scored = False

    @torch.no_grad()
    def update(self, logits_or_preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch.

        Args:
            logits_or_preds: floating-point scores of shape (N, C), reduced with argmax, or integer
                class predictions of shape (N,).
            target: integer true classes of shape (N,); any value where ``mask`` is False.
            mask: (N,) bool, True where the label is present; unlabelled rows are not counted.
                ``None``: every row is labelled.

        Raises:
            TypeError: an input is not a tensor.
            ValueError: a shape, dtype, device or class index does not fit.
        """
        for name, tensor in (("logits_or_preds", logits_or_preds), ("target", target)):
            self._check_tensor(name, tensor)
        preds = self._predictions(logits_or_preds)
        if mask is not None:
            self._check_tensor("mask", mask)
            if mask.dtype != torch.bool or mask.shape != target.shape[:1]:
                raise ValueError(
                    f"mask must be a ({target.shape[0]},) bool tensor, got {mask.dtype} "
                    f"{tuple(mask.shape)}."
                )
            target = torch.where(mask, target, 0)  # checked as a class, then left out below
        _check_indices("target", target, self.num_classes)
        if target.shape[0] != preds.shape[0]:
            raise ValueError(
                f"logits_or_preds has {preds.shape[0]} samples but target has {target.shape[0]}: "
                "pass one target per sample."
            )
        if mask is not None:
            target = torch.where(mask, target, _UNLABELLED)
        self._confmat.update(preds, target)
        if logits_or_preds.is_floating_point():
            probabilities = torch.softmax(logits_or_preds.detach().float(), dim=1)
            self._calibration.update(probabilities, target)
            self._scored = True

    def compute(self) -> ClassificationReport:
        """The report over everything accumulated since creation or the last :meth:`reset`."""
        ece = float(self._calibration.compute()) if self._scored else math.nan
        return ClassificationReport.from_confusion_matrix(self._confmat.compute(), ece)

    def _check_tensor(self, name: str, tensor: Tensor) -> None:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(tensor).__name__}.")
        if tensor.device != self.device:
            raise ValueError(
                f"{name} is on {tensor.device} but the metric is on {self.device}: "
                "call .to(device) on the metric or move the tensors."
            )

    def _predictions(self, logits_or_preds: Tensor) -> Tensor:
        if logits_or_preds.is_floating_point():
            if logits_or_preds.dim() != 2 or logits_or_preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits_or_preds holds floats, so it must be logits of shape "
                    f"(N, {self.num_classes}), got {tuple(logits_or_preds.shape)}: pass (N, C) "
                    "scores or integer class predictions of shape (N,)."
                )
            return logits_or_preds.detach().argmax(dim=1)
        _check_indices("logits_or_preds", logits_or_preds, self.num_classes)
        return logits_or_preds.detach()


def _check_indices(name: str, indices: Tensor, num_classes: int) -> None:
    """Require a 1-D integer tensor of class indices in ``[0, num_classes)``."""
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"{name} must hold integer class indices, got dtype {indices.dtype}.")
    if indices.dim() != 1:
        raise ValueError(
            f"{name} must be class indices of shape (N,), got {tuple(indices.shape)}: "
            "flatten it or pass one index per sample."
        )
    if ((indices < 0) | (indices >= num_classes)).any():
        raise ValueError(
            f"{name} holds class indices outside [0, {num_classes}): found "
            f"{int(indices.min())}..{int(indices.max())}; check num_classes."
        )


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is zero."""
    return numerator / denominator if denominator else math.nan


def nanmean(values: list[float]) -> float:
    """Mean of the non-NaN values, NaN when there are none."""
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def json_float(value: float) -> float | None:
    """``value``, or ``None`` (JSON ``null``) where it is NaN."""
    return None if math.isnan(value) else value
