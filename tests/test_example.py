"""The customers example, as a user would run it: its tables are what its generator makes, and it
goes from ``mtlkit train`` to ``mtlkit predict``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from mtlkit.cli.main import main

EXAMPLE = Path(__file__).parents[1] / "examples" / "customers"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_bundled_tables_are_what_the_generator_makes(tmp_path):
    spec = importlib.util.spec_from_file_location("generate", EXAMPLE / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.main(tmp_path)
    for name in ("customers.csv", "new_customers.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name
    table = pd.read_csv(EXAMPLE / "customers.csv")
    assert 0.1 < table["monthly_spend"].isna().mean() < 0.5  # partly missing labels
    assert (EXAMPLE / "customers.csv").stat().st_size < 200_000


@pytest.mark.slow
def test_the_example_trains_and_predicts(tmp_path, capsys):
    run = tmp_path / "run"
    toy = ["--set", "train.epochs=1", "--set", "data.limit=200", "--set", "train.progress=false"]
    assert main(["train", str(EXAMPLE / "config.yaml"), *toy, "--out", str(run)]) == 0
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), str(EXAMPLE / "new_customers.csv"), "--out", str(out)]) == 0
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == [
        "customer_id",
        *["churn_pred", "churn_prob", "plan_pred", "plan_prob", "spend_pred"],
    ]
    new = pd.read_csv(EXAMPLE / "new_customers.csv")
    assert predicted["customer_id"].tolist() == new["customer_id"].tolist()
    assert set(predicted["churn_pred"]) <= {"yes", "no"}
    assert set(predicted["plan_pred"]) <= {"basic", "plus", "premium"}
    assert predicted["spend_pred"].notna().all()
