"""The pruners of ``tune``: no verdict in the first quarter of the epochs."""

from __future__ import annotations

import optuna
import pytest

from mtlkit.workflows.tune import create_pruner


def _study(name: str, epochs: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=create_pruner(name, epochs))
    for _ in range(2):  # two complete trials, far ahead at every epoch
        trial = study.ask()
        for epoch in range(1, epochs + 1):
            trial.report(0.9, epoch)
        study.tell(trial, 0.9)
    return study


def _first_pruned_epoch(study: optuna.Study, epochs: int) -> int | None:
    trial = study.ask()
    for epoch in range(1, epochs + 1):
        trial.report(0.1, epoch)  # behind the others at every epoch
        if trial.should_prune():
            return epoch
    return None


@pytest.mark.parametrize(("epochs", "first"), [(40, 10), (8, 2), (3, 1)])
def test_the_median_pruner_waits_a_quarter_of_the_epochs(epochs, first):
    assert _first_pruned_epoch(_study("median", epochs), epochs) == first


def test_no_pruner_never_prunes():
    assert _first_pruned_epoch(_study("none", 12), 12) is None


def test_an_unknown_pruner_is_refused():
    with pytest.raises(ValueError, match="unknown pruner 'early'"):
        create_pruner("early", 10)
