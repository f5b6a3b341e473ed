"""Tables: read from every source, split, encoded with statistics fitted on train only; bad
input refused with the file, column and row named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mtlkit.data import InputError, TableTask, load_table, read_table
from mtlkit.data.tables import Origin, TablePreprocessing

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASKS = [
    TableTask("churn", "binary", column="churned"),
    TableTask("plan", "classification", column="plan"),
    TableTask("spend", "regression", column="spend"),
    TableTask("tags", "multilabel", columns=("sports", "news")),
]
SPLITS = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
"""Rows 0-5 train, 6-7 val, 8-9 test, repeated: the tests know every row's split."""


def table(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    """Mixed feature types, string labels, some labels missing, and a split column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(float),
            "region": rng.choice(["north", "south", "east"], rows),
            "churned": np.resize(["yes", "no", "no"], rows),
            "plan": np.resize(["basic", "plus", "premium", "plus"], rows),
            "spend": rng.normal(60.0, 15.0, rows),
            "sports": rng.integers(0, 2, rows),
            "news": rng.integers(0, 2, rows).astype(float),
            "split": np.resize(SPLITS, rows),
        }
    )
    frame.loc[::5, "plan"] = None
    frame.loc[1::7, "spend"] = np.nan
    frame.loc[2::9, "news"] = np.nan
    return frame


def load(source, tasks=TASKS, **options):
    return load_table(source, tasks, **{"split_column": "split", "quiet": True, **options})


def rows_of(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    return frame[frame["split"] == split]


@pytest.mark.slow
def test_every_source_gives_the_same_data(tmp_path):
    frame = table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    arrays = {name: frame[name].to_numpy() for name in frame.columns}
    arrays["plan"] = frame["plan"].fillna("").to_numpy(dtype=str)  # a blank string is empty
    for name in ("region", "churned", "split"):
        arrays[name] = arrays[name].astype(str)
    np.savez(tmp_path / "t.npz", **arrays)
    reference = load(frame)
    for source in (tmp_path / "t.csv", tmp_path / "t.parquet", tmp_path / "t.npz", arrays):
        data = load(source)
        assert data.tasks == reference.tasks, source
        for split in ("train", "val", "test"):
            got, want = getattr(data, split), getattr(reference, split)
            assert torch.equal(got.inputs, want.inputs), (source, split)
            for task in want.targets:
                assert torch.equal(got.targets[task], want.targets[task]), (source, task)
                assert torch.equal(got.masks[task], want.masks[task]), (source, task)


def test_a_two_dimensional_array_is_read_as_columns():
    frame, _ = read_table({"x": np.arange(6.0).reshape(3, 2), "y": np.array([1, 2, 3])})
    assert list(frame.columns) == ["x_0", "x_1", "y"]
    assert frame["x_1"].tolist() == [1.0, 3.0, 5.0]


def test_fractions_partition_the_rows_as_a_function_of_the_seed():
    frame = table(100).drop(columns="split")
    data = load(frame, split_column=None, seed=3, val_fraction=0.1, test_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (70, 10, 20)
    again = load(frame, split_column=None, seed=3, val_fraction=0.1, test_fraction=0.2)
    assert torch.equal(again.test.inputs, data.test.inputs)
    other = load(frame, split_column=None, seed=4, val_fraction=0.1, test_fraction=0.2)
    assert not torch.equal(other.test.inputs, data.test.inputs)


def test_numbers_are_standardised_and_categories_one_hot_with_train_statistics():
    frame = table(60)
    data = load(frame, features=["age", "region"])
    train = rows_of(frame, "train")
    numeric, categorical = data.preprocessing.features.features
    # float64 statistics of ~40 values, by numpy here and by pandas there: a few ulps apart at most
    assert (numeric.mean, numeric.std) == pytest.approx(
        (train["age"].mean(), train["age"].std(ddof=0)), rel=1e-12
    )
    assert categorical.categories == ("east", "north", "south")
    expected_age = (train["age"].to_numpy() - numeric.mean) / numeric.std
    torch.testing.assert_close(
        data.train.inputs[:, 0], torch.tensor(expected_age, dtype=torch.float32)
    )  # float32 rounding of a float64 value: the default rtol of 1.3e-6 covers it
    one_hot = pd.get_dummies(train["region"]).to_numpy(dtype=np.float32)
    assert torch.equal(data.train.inputs[:, 1:], torch.tensor(one_hot))


def test_preprocessing_is_fitted_on_train_rows_only():
    """Changing every test row (features and labels) leaves what was fitted unchanged."""
    frame = table(60)
    changed = frame.copy()
    test = changed["split"] == "test"
    changed.loc[test, "age"] = 1e6
    changed.loc[test, "region"] = "west"  # a category training never saw
    changed.loc[test, "spend"] = -1e6
    changed.loc[test, "plan"] = "basic"
    before, after = load(frame), load(changed)
    assert after.preprocessing.to_dict() == before.preprocessing.to_dict()
    assert after.tasks == before.tasks  # the regression's mean and std are the train targets'
    assert torch.equal(after.train.inputs, before.train.inputs)
    assert not torch.equal(after.test.inputs, before.test.inputs)
    assert (after.test.inputs[:, 1:] == 0).all()  # 'west' is all zeros


def test_unseen_categories_are_zeros_with_a_note_counting_them(capsys):
    frame = table(40)
    frame.loc[frame["split"] == "test", "region"] = ["west", "west", None, "west"] * 2
    load(frame, features=["region"], quiet=False)
    assert "column 'region': 6 value(s) are categories not seen in training" in (
        capsys.readouterr().err
    )


def test_missing_labels_mask_rows_out_of_their_task_only():
    frame = table(40)
    data = load(frame)
    train = rows_of(frame, "train").reset_index(drop=True)
    assert data.train.masks["plan"].tolist() == train["plan"].notna().tolist()
    assert data.train.masks["spend"].tolist() == train["spend"].notna().tolist()
    assert data.train.masks["churn"].all()
    tags = (train["sports"].notna() & train["news"].notna()).tolist()
    assert data.train.masks["tags"].tolist() == tags
    assert (data.train.targets["plan"][~data.train.masks["plan"]] == 0).all()
    assert (data.train.targets["spend"][~data.train.masks["spend"]] == 0).all()


def test_labels_become_targets_and_specs_keep_their_names():
    frame = table(40)
    data = load(frame)
    specs = {spec.name: spec for spec in data.tasks}
    assert specs["plan"].labels == ("basic", "plus", "premium")
    assert specs["churn"].labels == ("no", "yes")  # the positive label is 'yes'
    assert specs["tags"].labels == ("sports", "news") and specs["tags"].num_labels == 2
    train = rows_of(frame, "train").reset_index(drop=True)
    assert data.train.targets["churn"].tolist() == (train["churned"] == "yes").tolist()
    plan = train["plan"].map({"basic": 0, "plus": 1, "premium": 2}).fillna(0)
    assert data.train.targets["plan"].tolist() == plan.astype(int).tolist()
    spend = specs["spend"]
    labelled = train["spend"].dropna()
    assert (spend.target_mean, spend.target_std) == pytest.approx(
        (labelled.mean(), labelled.std(ddof=0)), rel=1e-12
    )
    torch.testing.assert_close(
        data.train.targets["spend"], torch.tensor(train["spend"].fillna(0).to_numpy()).float()
    )


def test_binary_labels_other_than_yes_no_name_their_positive_one():
    frame = table(40).assign(churned=np.resize(["stay", "left"], 40))
    with pytest.raises(InputError, match=r"which of the labels \['left', 'stay'\].*positive"):
        load(frame)
    tasks = [TableTask("churn", "binary", column="churned", positive="left")]
    data = load(frame, tasks)
    assert data.tasks[0].labels == ("stay", "left")
    train = rows_of(frame, "train")
    assert data.train.targets["churn"].tolist() == (train["churned"] == "left").tolist()


def test_numbers_can_be_declared_categorical():
    data = load(table(40), features=["age"], categorical=["age"])
    feature = data.preprocessing.features.features[0]
    assert feature.categories == tuple(
        sorted({str(int(a)) for a in rows_of(table(40), "train")["age"]})
    )
    assert data.train.inputs.sum(dim=1).eq(1).all()


def test_the_preprocessing_round_trips_through_json():
    frame = table(40)
    data = load(frame)
    restored = TablePreprocessing.from_dict(json.loads(json.dumps(data.preprocessing.to_dict())))
    names = [task.name for task in TASKS]
    again = restored.split(rows_of(frame, "test"), Origin("t"), "the test rows", names)
    assert torch.equal(again.inputs, data.test.inputs)
    for task in names:
        assert torch.equal(again.targets[task], data.test.targets[task])
        assert torch.equal(again.masks[task], data.test.masks[task])


def test_per_task_tables_split_on_their_own_and_share_one_feature_encoder():
    first = table(40, seed=1).drop(columns=["plan", "spend", "sports", "news"])
    second = table(30, seed=2).drop(columns=["churned", "sports", "news", "spend"])
    second["extra"] = 1.0  # only in one table: not a feature under features="all"
    tasks = [
        TableTask("churn", "binary", column="churned", table=first),
        TableTask("plan", "classification", column="plan", table=second),
    ]
    data = load_table(None, tasks, split_column="split", quiet=True)
    assert data.multi_input and list(data.train) == ["churn", "plan"]
    assert len(data.train["churn"]) == 24 and len(data.train["plan"]) == 18
    assert data.preprocessing.features.columns == ["age", "region"]
    age = pd.concat([rows_of(first, "train")["age"], rows_of(second, "train")["age"]])
    numeric = data.preprocessing.features.features[0]
    assert (numeric.mean, numeric.std) == pytest.approx((age.mean(), age.std(ddof=0)), rel=1e-12)
    assert set(data.train["plan"].targets) == {"plan"}


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        (
            lambda f: f.drop(columns="age"),
            {"features": ["age"]},
            r"t\.csv: missing feature column\(s\) 'age'",
        ),
        (
            lambda f: f.drop(columns="plan"),
            {},
            r"t\.csv: missing label column\(s\) of task 'plan': 'plan'",
        ),
        (
            lambda f: f.assign(age=f["age"].astype(object)).pipe(_set, 3, "age", "old"),
            {},
            r"t\.csv, column 'age', row 4 \(line 5\): 'old' is not a number, but most of the "
            r"column's values are numbers; correct it .* or list the column in data.categorical",
        ),
        (
            lambda f: f.assign(spend=f["spend"].astype(object)).pipe(_set, 2, "spend", "unknown"),
            {},
            r"t\.csv, column 'spend', row 3 \(line 4\): 'unknown' is not a number, but task "
            r"'spend' is a regression on this column",
        ),
        (
            lambda f: f.pipe(_set, 9, "plan", "gold"),
            {},
            r"t\.csv, column 'plan', row 10 \(line 11\): label 'gold' of task 'plan' is in the "
            r"test rows but never in the training rows",
        ),
        (
            lambda f: f.drop(columns="split").head(4),
            {"split_column": None, "val_fraction": 0.0, "test_fraction": 0.1},
            r"t\.csv: 4 rows split by .* leave the test split empty",
        ),
        (
            lambda f: f.pipe(_set, 7, "split", "later"),
            {},
            r"t\.csv, column 'split', row 8 \(line 9\): 'later' is not a split",
        ),
        (
            lambda f: f.assign(spend=np.where(f["split"] == "val", np.nan, f["spend"])),
            {},
            r"t\.csv: task 'spend' has no labelled row in the val split",
        ),
        (
            lambda f: f.assign(churned=np.resize(["yes", "no", "maybe"], len(f))),
            {},
            r"t\.csv, column 'churned': binary task 'churn' needs exactly two labels",
        ),
        (
            lambda f: f.assign(region=[f"r{i}" for i in range(len(f))]),
            {"max_categories": 10},
            r"column 'region': 24 distinct values in the training rows, more than "
            r"data.max_categories = 10",
        ),
        (lambda f: f, {"features": ["age", "plan"]}, r"'plan' hold labels or the split"),
    ],
)
def test_bad_input_names_the_file_column_and_row(tmp_path, change, options, message):
    path = tmp_path / "t.csv"
    change(table(40)).to_csv(path, index=False)
    with pytest.raises(InputError, match=message):
        load(path, **options)


def _set(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame
