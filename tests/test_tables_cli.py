"""Your own data from the command line: the issue's config as written, train → predict → eval
on a table, bad input as one line and exit status 2, and one dataset per task."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from mtlkit.cli.main import main
from mtlkit.config import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ISSUE_CONFIG = """\
data:
  table: customers.csv        # .csv, .parquet or .npz
  features: all               # default: every column that no task uses; or a list of columns
  val_fraction: 0.1
  test_fraction: 0.2          # or split_column: a column holding train / val / test
tasks:
  churn: {type: binary, column: churned}
  plan:  {type: classification, column: plan}          # labels may be strings
  spend: {type: regression, column: monthly_spend, loss: huber}
model:
  backbone: mlp
  backbone_options:
    hidden: [256, 128]        # widths; also activation, dropout, batch_norm
"""
FAST = ["--set", "train.epochs=6", "--set", "train.batch_size=16", "--set", "train.progress=false"]
FAST += [
    "--set",
    "optim.name=adam",
    "--set",
    "optim.lr=0.02",
    "--set",
    "model.backbone_options.hidden=[16]",
]


def customers(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """The plan follows income, churn follows tenure, spend follows both; some labels empty."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, rows)
    tenure = rng.integers(1, 60, rows)
    frame = pd.DataFrame(
        {
            "income": income,
            "tenure": tenure,
            "region": rng.choice(["north", "south"], rows),
            "churned": np.where(tenure < 20, 1, 0),
            "plan": np.where(income < 45, "basic", np.where(income < 60, "plus", "premium")),
            "monthly_spend": 20 + 0.5 * income + rng.normal(0, 1, rows),
        }
    )
    frame.loc[::4, "plan"] = None
    frame.loc[1::5, "monthly_spend"] = np.nan
    return frame


@pytest.fixture
def project(tmp_path):
    """The issue's config and a customers.csv beside it."""
    (tmp_path / "config.yaml").write_text(ISSUE_CONFIG)
    customers().to_csv(tmp_path / "customers.csv", index=False)
    return tmp_path


def test_the_issues_config_is_valid_as_written(project):
    config = load_config(project / "config.yaml")
    assert config.data.table == str(project / "customers.csv")  # read beside the config
    assert {n: e.type for n, e in config.tasks.entries.items()} == {
        "churn": "binary",
        "plan": "classification",
        "spend": "regression",
    }
    assert config.tasks.entries["spend"].loss == "huber" and config.model.backbone_options[
        "hidden"
    ] == [256, 128]


@pytest.mark.slow
def test_train_predict_and_eval_a_table_with_string_labels(project, capsys):
    run = project / "run"
    assert main(["train", str(project / "config.yaml"), *FAST, "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "test churn: accuracy" in printed and "test spend: mae" in printed
    saved = json.loads((run / "preprocessing.json").read_text())
    assert saved["tasks"][1]["labels"] == ["basic", "plus", "premium"]
    new = customers(30, seed=1)
    new.drop(columns=["churned", "plan", "monthly_spend"]).assign(customer=range(30)).to_csv(
        project / "new.csv", index=False
    )
    assert main(["predict", str(run), str(project / "new.csv")]) == 2  # 'customer': unknown
    assert "column(s) 'customer' were not in the training table" in capsys.readouterr().err
    new.to_csv(project / "new.csv", index=False)  # the labels may come along: they are copied
    out = project / "predictions.parquet"
    assert main(["predict", str(run), str(project / "new.csv"), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"30 rows predicted: {out}\n"
    predicted = pd.read_parquet(out)
    assert list(predicted.columns) == [
        *["churned", "plan", "monthly_spend"],
        *["churn_pred", "churn_prob", "plan_pred", "plan_prob", "spend_pred"],
    ]
    assert set(predicted["plan_pred"]) <= {"basic", "plus", "premium"}
    labelled = new["plan"].notna()
    agree = (predicted["plan_pred"][labelled] == new["plan"][labelled]).mean()
    assert agree > 0.8  # the class names come back as they were written
    assert set(predicted["churn_pred"]) <= {0, 1} and predicted["churn_prob"].between(0, 1).all()
    assert main(["eval", str(run), "--data", str(project / "new.csv"), "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"churn", "plan", "spend"} and "rmse" in metrics["spend"]
    assert main(["eval", str(run), "--device", "cpu"]) == 0  # the test split, rebuilt
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(capsys.readouterr().out)["plan"]["accuracy"] == test["plan"]["accuracy"]
    customers(seed=5).to_csv(project / "customers.csv", index=False)
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    assert "the data differs from the data" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.drop(columns="monthly_spend"),
            "missing label column(s) of task 'spend': 'monthly_spend'",
        ),
        (
            lambda f: f.astype({"income": object}).pipe(_set, 5, "income", "high"),
            "column 'income', row 6 (line 7): 'high' is not a number",
        ),
        (
            lambda f: f.astype({"monthly_spend": object}).pipe(_set, 2, "monthly_spend", "?"),
            "column 'monthly_spend', row 3 (line 4): '?' is not a number, but task 'spend' is a "
            "regression",
        ),
        (lambda f: f.head(4), "leave the val split empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(project, capsys, change, message):
    change(customers()).to_csv(project / "customers.csv", index=False)
    assert main(["train", str(project / "config.yaml"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mtlkit: input error: {project / 'customers.csv'}")
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_class_seen_only_in_test_is_exit_2(project, capsys):
    frame = customers().assign(split=lambda f: np.where(f.index < 100, "train", "test"))
    frame.loc[110, "plan"] = "gold"
    frame.to_csv(project / "customers.csv", index=False)
    overrides = ["--set", "data.split_column=split", "--set", "data.features=[income, tenure]"]
    assert main(["train", str(project / "config.yaml"), *FAST, *overrides]) == 2
    err = capsys.readouterr().err
    assert "row 111 (line 112): label 'gold' of task 'plan' is in the test rows but never" in err


def _set(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame


@pytest.mark.slow
def test_baselines_compare_each_task_on_its_primary_metric(project, capsys):
    out = project / "cmp"
    one_epoch = [*FAST, "--set", "train.epochs=1", "--workers", "1"]
    assert main(["baselines", str(project / "config.yaml"), *one_epoch, "--out", str(out)]) == 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [(r["task"], r["metric"], r["higher_is_better"]) for r in rows] == [
        ("churn", "auroc", True),
        ("plan", "accuracy", True),
        ("spend", "rmse", False),
    ]
    single = yaml.safe_load((out / "single-spend" / "config.yaml").read_text())
    assert single["tasks"]["include"] == ["spend"]
    features = [
        json.loads((out / run / "preprocessing.json").read_text())["inputs"]["features"]
        for run in ("multi-task", "single-spend")
    ]
    assert features[0] == features[1]  # a baseline reads exactly the multi-task run's features


@pytest.mark.slow
def test_one_dataset_per_task_trains_and_predicts_images(tmp_path, offline_data, capsys):
    config = tmp_path / "mf.yaml"
    config.write_text(yaml.safe_dump({"name": "mf", "data": {"benchmark": "mnist+fashion"}}))
    run = tmp_path / "run"
    settings = ["train.epochs=1", "train.batch_size=16", "model.backbone=mlp", "data.epoch=2"]
    settings += ["train.progress=false", "data.val_fraction=0.2"]
    args = [arg for setting in settings for arg in ("--set", setting)]
    assert main(["train", str(config), *args, "--out", str(run)]) == 0
    assert "test digit: accuracy" in capsys.readouterr().out
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    assert (
        main(["predict", str(run), str(tmp_path / "images.npy"), "--out", str(tmp_path / "p.csv")])
        == 0
    )
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert list(predicted.columns) == ["digit_pred", "digit_prob", "fashion_pred", "fashion_prob"]
    assert len(predicted) == 3 and predicted["digit_pred"].between(0, 9).all()
    np.save(tmp_path / "small.npy", images[:, :20, :20])
    assert main(["predict", str(run), str(tmp_path / "small.npy")]) == 2
    assert "images of shape (1, 20, 20), but the model reads (1, 28, 28)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_with_dropout_is_reproducible_and_leaves_the_global_rng_alone(project):
    import torch

    from mtlkit.training import load_checkpoint
    from mtlkit.workflows import train

    config = load_config(
        project / "config.yaml",
        ["model.backbone_options.dropout=0.5", "model.backbone_options.hidden=[8]"],
    )
    config = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 1})})
    states = []
    for caller_seed in (1, 2):  # whatever the caller's random state, the run's is its own
        torch.manual_seed(caller_seed)
        before = torch.random.get_rng_state()
        run = train(config, project / f"run{caller_seed}").run_dir
        assert torch.equal(torch.random.get_rng_state(), before)
        states.append(load_checkpoint(run / "best.pt")["model"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


@pytest.mark.slow
def test_a_table_per_task_trains_each_task_on_its_own_rows(tmp_path, capsys):
    churn = customers(80, seed=1).drop(columns=["plan", "monthly_spend"])
    spend = customers(60, seed=2).drop(columns=["churned", "plan"])
    churn.to_csv(tmp_path / "churn.csv", index=False)
    spend.to_csv(tmp_path / "spend.csv", index=False)
    (tmp_path / "c.yaml").write_text(
        "tasks:\n"
        "  churn: {type: binary, column: churned, table: churn.csv}\n"
        "  spend: {type: regression, column: monthly_spend, table: spend.csv}\n"
        "data: {epoch: shortest, mixing: proportional}\n"
    )
    run = tmp_path / "run"
    one_epoch = [*FAST, "--set", "train.epochs=1"]
    assert main(["train", str(tmp_path / "c.yaml"), *one_epoch, "--out", str(run)]) == 0
    saved = json.loads((run / "preprocessing.json").read_text())
    assert [f["column"] for f in saved["inputs"]["features"]] == ["income", "tenure", "region"]
    rows = customers(5, seed=3).drop(columns=["churned", "plan", "monthly_spend"])
    rows.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(run), str(tmp_path / "new.csv")]) == 0
    predicted = pd.read_csv(run / "predictions-new.csv")
    assert list(predicted.columns) == ["churn_pred", "churn_prob", "spend_pred"]
    assert len(predicted) == 5
