"""The report of ``mtlkit tune``'s searches: per study, what its trials did and chose, the
compute pruning saved, values on the boundary of their range, and Optuna's plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtlkit.evaluation.document import Block, Figure, Heading, Paragraph, Table
from mtlkit.workflows.sweeps import SweepCounts


@dataclass(frozen=True)
class StudyReport:
    """One study's search: what its trials did and what it chose.

    Attributes:
        subject: the method's label, or ``single-task <task>``.
        study: the Optuna study's name in the storage.
        counts: its trials, complete, pruned and failed, and the trial-epochs they ran.
        full_epochs: the trial-epochs the same trials would run without pruning.
        chosen: the best trial's value of each parameter.
        boundary: the parameters whose chosen value is on the boundary of the range.
        val_score: the best trial's validation score.
    """

    subject: str
    study: str
    counts: SweepCounts
    full_epochs: int
    chosen: dict[str, Any]
    boundary: list[str]
    val_score: float

    @property
    def chosen_label(self) -> str:
        """``optim.lr=0.0123`` (several keys joined by ", ")."""
        return ", ".join(f"{key}={_short(value)}" for key, value in self.chosen.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def tuning_blocks(
    reports: Sequence[StudyReport], setup: str, studies: Mapping[str, Any], parameters: int
) -> list[Block]:
    """The report's account of the searches: per study (``reports``) its choice, trials,
    trial-epochs saved and boundary warnings, after the ``setup`` sentence; then Optuna's plots
    of the methods' ``studies`` (subject → study) searching ``parameters`` settings."""
    rows = []
    for report in reports:
        saved = 1 - report.counts.trial_epochs / report.full_epochs if report.full_epochs else 0.0
        rows.append(
            [
                report.subject,
                report.chosen_label,
                f"{report.val_score:.4f}",
                str(report.counts.complete),
                str(report.counts.pruned),
                str(report.counts.failed),
                f"{report.counts.trial_epochs} / {report.full_epochs} ({saved:.0%} saved)",
                ", ".join(report.boundary) or "—",
            ]
        )
    blocks: list[Block] = [
        Heading("The searches"),
        Paragraph(
            f"{setup} Chosen on the validation score (mean over tasks of the signed primary "
            "metric of the selected epoch); pruned trials are never results. Trial-epochs: "
            "epochs run against trials × epochs without pruning."
        ),
        Table(
            [
                "study",
                "chosen",
                "val score",
                "complete",
                "pruned",
                "failed",
                "trial-epochs run / full",
                "on the boundary",
            ],
            rows,
            2,
        ),
    ]
    warnings = [r for r in reports if r.boundary]
    if warnings:
        blocks.append(
            Paragraph(
                "**Warning**: "
                + "; ".join(f"{r.subject}: {', '.join(r.boundary)}" for r in warnings)
                + " chosen at the boundary of the range: the best value may lie outside it; "
                "widen the range and tune again."
            )
        )
    blocks += _plots(studies, parameters)
    return blocks


def _plots(studies: Mapping[str, Any], parameters: int) -> list[Block]:
    """Optuna's optimization history of each study and, with 2 or more parameters, their
    importances."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

    from mtlkit.evaluation.plots import axes_png

    blocks: list[Block] = []
    for subject, study in studies.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            blocks.append(
                Figure(
                    axes_png(optuna_plots.plot_optimization_history(study)),
                    f"{subject}: validation score per trial and the best so far (Optuna)",
                )
            )
            complete = len(study.get_trials(deepcopy=False, states=_complete()))
            if parameters > 1 and complete > 2:
                blocks.append(
                    Figure(
                        axes_png(optuna_plots.plot_param_importances(study)),
                        f"{subject}: parameter importances (Optuna's default evaluator)",
                    )
                )
    return blocks


def _complete() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE,)
