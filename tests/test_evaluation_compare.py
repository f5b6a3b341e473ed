"""Δm and relative differences against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from mtlkit.evaluation import (
    ClassificationReport,
    ComparisonRow,
    choose_by_validation,
    compare_reports,
    compare_values,
    delta_m,
)

# Two higher-is-better and two lower-is-better measures, values exact in binary.
MTL = {"seg": 0.75, "depth": 0.75, "cls": 0.5, "normal": 0.375}
STL = {"seg": 0.5, "depth": 0.5, "cls": 0.5, "normal": 0.5}
HIGHER = {"seg": True, "depth": False, "cls": True, "normal": False}
# seg: +100 (0.75 - 0.5) / 0.5 = +50;   depth (lower better): -100 (0.75 - 0.5) / 0.5 = -50;
# cls: 0;   normal (lower better): -100 (0.375 - 0.5) / 0.5 = +25.   Δm = (50 - 50 + 0 + 25) / 4.
HAND_RELATIVE = {"seg": 50.0, "depth": -50.0, "cls": 0.0, "normal": 25.0}
HAND_DELTA_M = 6.25


def _report(confusion_matrix: list[list[int]]) -> ClassificationReport:
    return ClassificationReport.from_confusion_matrix(torch.tensor(confusion_matrix))


def test_hand_example_mixed_directions() -> None:
    rows = compare_values(MTL, STL, HIGHER)
    assert {row.task: row.relative_difference for row in rows} == HAND_RELATIVE
    assert delta_m(rows) == HAND_DELTA_M


def test_identical_results_give_zero() -> None:
    rows = compare_values(STL, dict(STL), HIGHER)
    assert delta_m(rows) == 0.0
    assert {row.relative_difference for row in rows} == {0.0}


def test_rows_built_by_hand_agree_with_compare_values() -> None:
    rows = [ComparisonRow(task, "value", STL[task], MTL[task], HIGHER[task]) for task in MTL]
    assert rows == compare_values(MTL, STL, HIGHER)
    assert delta_m(rows) == HAND_DELTA_M


def test_compare_reports_uses_metric_directions() -> None:
    # Accuracy 3/4 (multi-task) against 2/4 (single-task): +50 %.
    mtl = {"left": _report([[2, 0], [1, 1]]), "right": _report([[2, 0], [0, 2]])}
    stl = {"right": _report([[2, 0], [0, 2]]), "left": _report([[1, 1], [1, 1]])}
    rows = compare_reports(mtl, stl, metrics=("accuracy", "macro_f1"))
    assert [(row.task, row.metric) for row in rows] == [
        ("left", "accuracy"),
        ("left", "macro_f1"),
        ("right", "accuracy"),
        ("right", "macro_f1"),
    ]
    assert rows[0].single_task == 0.5 and rows[0].multi_task == 0.75
    assert rows[0].relative_difference == 50.0 and rows[0].higher_is_better
    assert rows[2].relative_difference == 0.0
    with pytest.raises(ValueError, match="single_task lacks 'left'"):
        compare_reports(mtl, {"right": stl["right"]})
    with pytest.raises(ValueError, match="metrics names 'tpr'"):
        compare_reports(mtl, stl, metrics=("tpr",))
    with pytest.raises(ValueError, match="metrics is empty"):
        compare_reports(mtl, stl, metrics=())


@pytest.mark.parametrize(
    ("mtl", "stl", "higher", "match"),
    [
        ({"a": 1.0}, {"a": 1.0, "b": 1.0}, {"a": True, "b": True}, "mtl lacks 'b'"),
        ({"a": 1.0, "b": 1.0}, {"a": 1.0}, {"a": True, "b": True}, "stl lacks 'b'"),
        ({"a": 1.0}, {"a": 1.0}, {}, "higher_is_better lacks 'a'"),
        ({"a": 1.0}, {"a": 0.0}, {"a": True}, "single-task value of a/value is 0"),
        ({"a": math.nan}, {"a": 1.0}, {"a": True}, "multi-task value of a/value is nan"),
        ({"a": 1.0}, {"a": math.inf}, {"a": True}, "single-task value of a/value is inf"),
        ({}, {}, {}, "mtl is empty"),
    ],
)
def test_bad_arguments_raise(
    mtl: dict[str, float], stl: dict[str, float], higher: dict[str, bool], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        compare_values(mtl, stl, higher)


def test_bad_rows_raise() -> None:
    with pytest.raises(ValueError, match="single-task value of t/accuracy is 0"):
        ComparisonRow("t", "accuracy", 0.0, 0.5, True)
    with pytest.raises(ValueError, match="rows is empty"):
        delta_m([])


def test_choose_by_validation_takes_the_best_mean_and_the_first_of_equals():
    choice = choose_by_validation([[0.5, 0.7], [0.6, 0.62]])
    assert choice.index == 1 and choice.val_scores == pytest.approx([0.6, 0.61])
    assert choose_by_validation([[0.5], [0.5]]).index == 0


def test_a_value_with_a_diverged_seed_is_never_chosen_and_all_diverged_choose_none():
    diverged = -math.inf
    assert choose_by_validation([[0.9, diverged], [0.1, 0.1]]).index == 1
    choice = choose_by_validation([[0.9, diverged], [diverged]])
    assert choice.index is None and choice.val_scores == [diverged, diverged]
    with pytest.raises(ValueError, match="one or more values"):
        choose_by_validation([[0.5], []])
