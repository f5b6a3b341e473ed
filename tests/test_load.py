"""``mtlkit.load(RUN_DIR)`` in Python gives what ``mtlkit predict`` writes, row for row, and
needs no optional extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import mtlkit
from mtlkit.cli.main import main
from mtlkit.data import InputError, read_table

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

EXAMPLE = Path(__file__).parents[1] / "examples" / "customers"


def test_load_and_predict_equal_mtlkit_predict_row_for_row(customers_run, tmp_path):
    out = tmp_path / "predictions.csv"
    new = EXAMPLE / "new_customers.csv"
    assert main(["predict", str(customers_run), str(new), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    model = mtlkit.load(customers_run)
    assert [task.name for task in model.tasks] == ["churn", "plan", "spend"]
    from_file = model.predict(new)
    from_frame = model.predict(pd.read_csv(new))
    for table in (from_file, from_frame):  # the CSV round trip keeps float64 exactly
        pd.testing.assert_frame_equal(table, written, check_exact=True)
    frame, origin = read_table(new)
    features = model.preprocessing.inputs(frame.drop(columns="customer_id"), origin, quiet=True)
    from_tensor = model.predict(features)  # prepared inputs: only the predictions
    pd.testing.assert_frame_equal(from_tensor, written.drop(columns="customer_id"))
    outputs = model(features)
    assert set(outputs) == {"churn", "plan", "spend"} and outputs["plan"].shape == (20, 3)


def test_bad_inputs_are_refused_with_the_fix(customers_run):
    model = mtlkit.load(customers_run)
    with pytest.raises(InputError, match=r"have shape \(N, \d+\); got \(3, 2\)"):
        model.predict(torch.zeros(3, 2))
    frame = pd.read_csv(EXAMPLE / "new_customers.csv").assign(churn_pred=1)
    with pytest.raises(InputError, match="column\\(s\\) 'churn_pred' were not in the training"):
        model.predict(frame)


def test_load_imports_no_optional_extra(customers_run):
    """In a fresh interpreter: loading and predicting imports neither Lightning nor ONNX."""
    code = (
        "import sys, mtlkit\n"
        f"mtlkit.load({str(customers_run)!r}).predict({str(EXAMPLE / 'new_customers.csv')!r})\n"
        "extras = {'lightning', 'pytorch_lightning', 'onnx', 'onnxruntime', 'onnxscript'}\n"
        "print(sorted(extras & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_a_missing_extra_is_named_with_its_install_command(customers_run, monkeypatch, capsys):
    """Without Lightning, ``import mtlkit.lightning`` says which extra installs it; without
    onnxscript, ``mtlkit export --format onnx`` does (exit 2)."""
    code = (
        "import sys\n"
        "sys.modules['lightning'] = None  # as if not installed\n"
        "try:\n"
        "    import mtlkit.lightning\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "mtlkit.lightning needs Lightning" in result.stdout
    assert "pip install 'mtlkit[lightning]'" in result.stdout
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(["export", str(customers_run), "--format", "onnx"]) == 2
    error = capsys.readouterr().err
    assert "ONNX export needs onnxscript" in error and "pip install 'mtlkit[onnx]'" in error
    assert not (customers_run / "model.onnx").exists()
