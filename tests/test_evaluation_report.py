"""The markdown report and the terminal comparison table, parsed back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mtlkit.evaluation import (
    ClassificationReport,
    ComparisonRow,
    format_comparison_table,
    write_report,
)

# The hand example of test_evaluation_metrics: accuracy 6/10, macro accuracy 11/18 = 0.6111,
# macro F1 38/63 = 0.6032; class 0 has TPR 2/4, TNR 5/6, PPV 2/3, NPV 5/7, FPR 1/6.
LEFT = ClassificationReport.from_confusion_matrix(torch.tensor([[2, 1, 1], [1, 2, 0], [0, 1, 2]]))
# Class 1 occurs once and is never predicted: (TP, FP, FN, TN) = (3, 1, 0, 0) and (0, 0, 1, 3), so
# class 0 has an undefined NPV and class 1 an undefined PPV; macro accuracy (1 + 0) / 2, macro F1
# (6/7 + 0) / 2 = 0.4286.
RIGHT = ClassificationReport.from_confusion_matrix(torch.tensor([[3, 0], [1, 0]]))
ROWS = [
    ComparisonRow("left", "accuracy", 0.5, 0.625, True),  # +25 %
    ComparisonRow("right", "accuracy", 0.5, 0.4375, True),  # -12.5 %
]  # Δm = (25 - 12.5) / 2 = 6.25


def _cells(text: str, first_cell: str, separator: str = "|") -> list[str]:
    """The cells of the table line whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(separator)]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table line starts with {first_cell!r}")


def _write(tmp_path: Path, **overrides: object) -> str:
    arguments: dict[str, object] = {
        "title": "Multi-MNIST, equal weights",
        "run_info": {"config": "multi-mnist", "seed": 3, "versions": {"torch": "2.13.0"}},
        "task_reports": {"left": LEFT, "right": RIGHT},
        "comparison": ROWS,
        "history": [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25, "val/acc": 0.9}],
    }
    arguments.update(overrides)
    path = write_report(tmp_path / "run" / "report.md", **arguments)  # type: ignore[arg-type]
    assert path == tmp_path / "run" / "report.md"
    return path.read_text(encoding="utf-8")


def test_report_holds_every_table(tmp_path: Path) -> None:
    text = _write(tmp_path)
    assert text.startswith("# Multi-MNIST, equal weights\n")
    assert _cells(text, "config") == ["config", "multi-mnist"]
    assert _cells(text, "versions.torch") == ["versions.torch", "2.13.0"]
    assert _cells(text, "left")[:7] == ["left", "0.6000", "0.6111", "0.6000", "0.6032", "n/a", "10"]
    assert _cells(text, "right") == ["right", "0.7500", "0.5000", "0.7500", "0.4286", "n/a", "4"]
    assert "**Δm% = +6.25**" in text
    assert _cells(text, "2") == ["2", "0.25", "0.9"]  # history
    left_detail = text[text.index("## Task left") : text.index("## Task right")]
    assert _cells(left_detail, "true \\ predicted") == ["true \\ predicted", "0", "1", "2"]
    assert _cells(left_detail, "0")[:4] == ["0", "2", "1", "1"]  # confusion matrix row
    per_class = left_detail[left_detail.index("### Per class") :]
    assert _cells(per_class, "0") == ["0", "4", "0.500", "0.833", "0.667", "0.714", "0.167"]
    right_detail = text[text.index("## Task right") :]
    per_class = right_detail[right_detail.index("### Per class") :]
    assert _cells(per_class, "0") == ["0", "3", "1.000", "0.000", "0.750", "n/a", "1.000"]
    assert _cells(per_class, "1") == ["1", "1", "0.000", "1.000", "n/a", "0.750", "0.000"]


def test_comparison_rows_in_report(tmp_path: Path) -> None:
    section = _write(tmp_path).split("## Multi-task vs single-task")[1].split("## History")[0]
    assert _cells(section, "left") == ["left", "accuracy", "0.5000", "0.6250", "+25.00"]
    assert _cells(section, "right") == ["right", "accuracy", "0.5000", "0.4375", "-12.50"]


def test_optional_sections_left_out_and_cells_escaped(tmp_path: Path) -> None:
    text = _write(tmp_path, comparison=None, history=None, run_info={"method": "a|b"})
    assert "Multi-task vs single-task" not in text and "## History" not in text
    assert "| method | a\\|b  |" in text


def test_no_temporary_file_left_and_failed_write_keeps_old_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _write(tmp_path)
    assert os.listdir(tmp_path / "run") == ["report.md"]

    def failing_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path, title="Another run")
    assert os.listdir(tmp_path / "run") == ["report.md"]
    assert (tmp_path / "run" / "report.md").read_text(encoding="utf-8") == old


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"title": "  "}, "title is blank"),
        ({"task_reports": {}}, "task_reports is empty"),
        ({"comparison": []}, "comparison is empty: pass None"),
        ({"history": []}, "history is empty: pass None"),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _write(tmp_path, **overrides)
    assert not (tmp_path / "run" / "report.md").exists()


def test_terminal_table() -> None:
    text = format_comparison_table(ROWS)
    lines = text.splitlines()
    assert [cell.strip() for cell in lines[0].split("|")] == [
        "task",
        "single-task accuracy",
        "multi-task accuracy",
        "diff %",
    ]
    assert len({len(line) for line in lines[:-1]}) == 1  # fixed width
    assert _cells(text, "left") == ["left", "0.5000", "0.6250", "+25.00"]
    assert _cells(text, "right") == ["right", "0.5000", "0.4375", "-12.50"]
    assert lines[-1].startswith("Δm% = +6.25 ")


def test_terminal_table_with_several_metrics() -> None:
    rows = [*ROWS, ComparisonRow("left", "loss", 0.5, 0.25, False)]  # +50 %, Δm = 62.5 / 3
    text = format_comparison_table(rows)
    assert [cell.strip() for cell in text.splitlines()[0].split("|")][:2] == ["task", "metric"]
    assert _cells(text, "left") == ["left", "accuracy", "0.5000", "0.6250", "+25.00"]
    assert text.splitlines()[-1].startswith("Δm% = +20.83 ")
    with pytest.raises(ValueError, match="rows is empty"):
        format_comparison_table([])
