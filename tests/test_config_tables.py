"""The configuration of tables, task types, one dataset per task and the MLP: each mistake one
line naming the key; what is resolved re-reads as the same config."""

from __future__ import annotations

import pytest

from mtlkit.config import ConfigError, load_config, parse_config

TABLE = {"data": {"table": "t.csv"}, "tasks": {"y": {"type": "regression", "column": "y"}}}


def _with(base: dict, **sections) -> dict:
    raw = {key: dict(value) for key, value in base.items()}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            _with(TABLE, tasks={"y": {"type": "bin", "column": "y"}}),
            r"^tasks\.y\.type: must be one of: .*regression",
        ),
        (
            _with(TABLE, tasks={"y": {"type": "binary", "colum": "y"}}),
            r"^tasks\.y\.colum: unknown key; allowed keys: type, column",
        ),
        (_with(TABLE, tasks={"y": "binary"}), r"^tasks\.y: Input should be a valid dictionary"),
        (
            _with(TABLE, tasks={"y": {"type": "binary", "column": "y", "loss": "mse"}}),
            r"^tasks\.y\.loss: a binary task has no loss 'mse'; choose one of: bce",
        ),
        (
            _with(TABLE, tasks={"y": {"type": "regression", "column": "y", "metric": "auroc"}}),
            r"^tasks\.y\.metric: .*choose one of: rmse, mae, mse, r2",
        ),
        (
            _with(TABLE, tasks={"y": {"type": "multilabel", "column": "y"}}),
            r"^tasks\.y\.columns: a multilabel task needs its label columns",
        ),
        (
            _with(TABLE, tasks={"y": {"type": "regression", "columns": ["y"]}}),
            r"^tasks\.y\.column: a regression task needs the column",
        ),
        (
            _with(TABLE, tasks={"y": {"type": "regression", "column": "y", "positive": 1}}),
            r"^tasks\.y\.positive: only a binary task",
        ),
        (
            _with(TABLE, tasks={"y": {"type": "binary", "column": "y", "label_smoothing": 0.1}}),
            r"^tasks\.y\.label_smoothing: only classification",
        ),
        (
            _with(TABLE, tasks={"z": {"type": "binary", "column": "z", "table": "z.csv"}}),
            r"^tasks\.(y|z)\.table: give every task a table of its own, or none",
        ),
        (
            _with(TABLE, tasks={"include": ["x"]}),
            r"^tasks\.include: \['x'\] must name distinct tasks of the table: y",
        ),
        (
            _with(TABLE, data={"benchmark": "multi-mnist"}),
            r"^data\.benchmark: a benchmark and a table exclude each other",
        ),
        (
            _with(TABLE, data={"split_column": "s", "test_fraction": 0.3}),
            r"^data\.test_fraction: the split column 's' says",
        ),
        (_with(TABLE, data={"epoch": "shortest"}), r"^data\.epoch: only multi-input data"),
        (
            _with(TABLE, model={"backbone": "cnn", "backbone_options": {"dropout": 0.1}}),
            r"^model\.backbone_options\.dropout: backbone 'cnn' takes no option 'dropout'",
        ),
        (
            _with(TABLE, model={"backbone_options": {"hidden": [1.5]}}),
            r"^model\.backbone_options\.hidden: Input should be a valid integer",
        ),
        (
            _with(TABLE, data={"features": "some"}),
            r"^data\.features: must be 'all' or a list of columns",
        ),
        ({"data": {"table": "t.csv"}}, r"^tasks: a table needs its tasks declared"),
        (
            {"tasks": {"y": {"type": "binary", "column": "y"}}},
            r"^tasks\.y\.type: declaring a task needs a table",
        ),
        ({"data": {"test_fraction": 0.3}}, r"^data\.test_fraction: only tables read it"),
        ({"data": {"mixing": "proportional"}}, r"^data\.mixing: only multi-input data"),
        (
            {"data": {"benchmark": "mnist+fashion", "mixing": "random"}},
            r"^data\.mixing: must be one of: equal, proportional",
        ),
    ],
)
def test_mistakes_name_the_key_and_what_is_allowed(raw, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(raw)


def test_defaults_are_resolved_and_the_resolved_config_reads_back_the_same():
    table = parse_config(_with(TABLE, tasks={"c": {"type": "classification", "column": "c"}}))
    assert table.source == "table" and table.model.backbone == "mlp"
    assert table.model.backbone_options == {
        "hidden": [128, 128],
        "activation": "relu",
        "dropout": 0.0,
        "batch_norm": False,
    }
    assert table.tasks.entries["y"].loss == "mse" and table.tasks.entries["y"].metric == "rmse"
    assert table.tasks.entries["c"].label_smoothing == 0.0
    images = parse_config({"data": {"benchmark": "mnist+fashion", "epoch": 5}})
    assert (images.data.protocol, images.model.backbone, images.model.backbone_options) == (
        "standard",
        "cnn",
        {"batch_norm": False, "fc": True},
    )
    assert parse_config({"data": {"benchmark": "multi-fashion"}}).data.protocol == "pareto"
    for config in (table, images):
        assert parse_config(config.to_dict()) == config


def test_table_paths_in_a_file_are_read_from_its_folder(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    path = folder / "c.yaml"
    path.write_text(
        "data: {table: data/t.csv}\ntasks: {y: {type: regression, column: y, table: null}}\n"
    )
    assert load_config(path).data.table == str(folder / "data" / "t.csv")
    assert load_config(path, ["data.table=other.csv"]).data.table == "other.csv"
