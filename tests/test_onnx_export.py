"""ONNX export: every architecture's graph, run by onnxruntime, equals PyTorch within float32
rounding at two batch sizes; a preference-conditioned network's graph takes the preference as a
second input and equals PyTorch at any preference; ``mtlkit export --format onnx`` writes the
graph and what a deployment needs beside it; a network that cannot be exported says which
operation blocks it (exit 2) and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import mtlkit
from mtlkit.cli.main import main
from mtlkit.config import parse_config
from mtlkit.data import read_table
from mtlkit.models import (
    ARCHITECTURES,
    MLP,
    PREFERENCE_MODELS,
    HardSharing,
    classification_head,
    create_backbone,
    wrap_preference,
)
from mtlkit.models import create_model as create_architecture
from mtlkit.models.backbones import BACKBONES
from mtlkit.tasks import ClassificationTask, RegressionTask
from mtlkit.workflows import ExportError
from mtlkit.workflows.onnx_export import (
    INPUT_NAME,
    PREFERENCE_NAME,
    check_graph,
    onnx_graph,
    rounding_tolerance,
)

onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install mtlkit[onnx]")

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

EXAMPLE = Path(__file__).parents[1] / "examples" / "customers"
FEATURES = 12
BATCHES = (1, 5)
"""Two batch sizes, neither the one the graph was captured at (2)."""


def _model(name: str, preference: str | None = None) -> nn.Module:
    """Architecture ``name`` on an MLP trunk, with a classification and a regression head;
    wrapped in the preference-conditioned family ``preference`` if one is named."""
    torch.manual_seed(0)
    shape: tuple[int, ...] = (FEATURES,)
    if preference is not None:
        shape = PREFERENCE_MODELS.get(preference).inner_input_shape(shape, 2)
    trunk = create_backbone("mlp", shape, hidden=(16, 16))
    tasks = [ClassificationTask("plan", 3), RegressionTask("spend")]
    heads = {t.name: classification_head(trunk.out_features, t.output_size) for t in tasks}
    model = create_architecture(name, trunk, heads, shape)
    return (model if preference is None else wrap_preference(preference, model)).eval()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_onnxruntime_equals_pytorch_for_every_architecture_at_two_batch_sizes(name, tmp_path):
    """The tolerance is float32 rounding's, derived (not measured): a dot product of n float32
    terms is within γₙ·Σ|aᵢbᵢ| of the exact one, γₙ = n·u/(1 − n·u), u = 2⁻²⁴ (Higham §3.1);
    L weighted layers (here each Linear, parallel experts counted too) with 1-Lipschitz steps
    between them add at most L·γₙ relative to the order-one magnitudes that standard-normal
    inputs and initialised weights carry; PyTorch and onnxruntime each are that close to the
    exact value, so they are within 2·L·γₙ of each other, scaled by max(1, |output|). For these
    models (n ≤ 32, L ≤ 17) it is below 5e-5, where a wrong translation is off by O(1)."""
    model = _model(name)
    path = tmp_path / f"{name}.onnx"
    onnx_graph(model, (FEATURES,), path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == ["plan", "spend"]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a dynamic batch
    tolerance = rounding_tolerance(model)
    assert tolerance < 5e-5
    generator = torch.Generator().manual_seed(1)
    for batch in BATCHES:
        inputs = torch.randn(batch, FEATURES, generator=generator)
        with torch.no_grad():
            expected = model(inputs)
        plan, spend = session.run(None, {INPUT_NAME: inputs.numpy()})
        for got, want in ((plan, expected["plan"]), (spend, expected["spend"])):
            assert got.shape == tuple(want.shape) == (batch, want.shape[1])
            scale = max(1.0, want.abs().max().item())
            torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=tolerance * scale)
    check = check_graph(model, (FEATURES,), path)
    assert check.batches == (1, 3) and check.largest_difference <= check.tolerance == tolerance


@pytest.mark.parametrize("family", list(PREFERENCE_MODELS))
def test_a_preference_models_graph_takes_the_preference_as_a_second_input(family, tmp_path):
    """The graph reads one (K,) preference beside the batch; at two preferences (neither the
    uniform one it was captured at) onnxruntime equals PyTorch within the float32 rounding bound
    of the test above (every Linear counted, the hypernetwork's too), and the two preferences
    give outputs further apart than that bound: the preference is an input, not a constant."""
    model = _model("hard", family)
    path = tmp_path / f"{family}.onnx"
    onnx_graph(model, (FEATURES,), path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME, PREFERENCE_NAME]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a dynamic batch
    assert session.get_inputs()[1].shape == [2]
    tolerance = rounding_tolerance(model)
    inputs = torch.randn(BATCHES[1], FEATURES, generator=torch.Generator().manual_seed(1))
    got = {}
    for preference in ((0.8, 0.2), (0.1, 0.9)):
        model.set_preference(preference)
        with torch.no_grad():
            expected = model(inputs)
        feeds = {INPUT_NAME: inputs.numpy(), PREFERENCE_NAME: np.array(preference, np.float32)}
        got[preference] = dict(zip(model.task_names, session.run(None, feeds)))
        for name in model.task_names:
            scale = max(1.0, expected[name].abs().max().item())
            torch.testing.assert_close(
                torch.from_numpy(got[preference][name]),
                expected[name],
                rtol=0,
                atol=tolerance * scale,
            )
    first, second = got.values()
    for name in model.task_names:
        assert np.abs(first[name] - second[name]).max() > 2 * tolerance
    check = check_graph(model, (FEATURES,), path)
    assert check.largest_difference <= check.tolerance == tolerance


class _BatchAsNumber(nn.Module):
    """A trunk that reads the batch size as a Python number (``len(x)``)."""

    out_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(FEATURES, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(len(x), 4)


def test_a_graph_that_fixed_the_batch_size_is_refused(tmp_path):
    """torch.export makes ``len(x)`` a constant of the graph; the check names the cause."""
    model = HardSharing(_BatchAsNumber(), {"a": nn.Linear(4, 2)}).eval()
    path = tmp_path / "fixed.onnx"
    onnx_graph(model, (FEATURES,), path)
    with pytest.raises(ExportError, match="fixed the batch size at 2.*len\\(x\\)"):
        check_graph(model, (FEATURES,), path)


@torch.library.custom_op("mtlkit_test::twist", mutates_args=())
def twist(x: torch.Tensor) -> torch.Tensor:
    """An operation of the user's own: no ONNX translation exists for it."""
    return x.flip(-1)


@twist.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class _TwistedMLP(MLP):
    """An MLP trunk (the same weights) that ends with :func:`twist`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return twist(super().forward(x))


def _twisted(
    input_shape: tuple[int, ...],
    *,
    hidden: Sequence[int] = (128, 128),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> _TwistedMLP:
    """The trunk factory registered as ``twisted`` (the options of ``mlp``)."""
    return _TwistedMLP(
        int(np.prod(input_shape)),
        hidden,
        activation=activation,
        dropout=dropout,
        batch_norm=batch_norm,
    )


def test_export_writes_the_graph_and_what_a_deployment_needs(customers_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(customers_run, run)
    assert main(["export", str(run), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert (
        f"graph: {run / 'model.onnx'} (" in printed
        and "onnxruntime at batch sizes 1 and 3" in printed
    )
    described = json.loads((run / "model.onnx.json").read_text())
    assert described["graph"] == "model.onnx"
    assert described["tasks"] == ["churn", "plan", "spend"]
    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    assert list(described["outputs"]) == [o.name for o in session.get_outputs()]
    assert list(described["outputs"]) == described["tasks"]
    assert described["outputs"]["spend"]["type"] == "regression"
    assert described["preprocessing"] == json.loads((run / "preprocessing.json").read_text())
    assert described["input"]["name"] == INPUT_NAME
    assert described["input"]["shape"] == ["batch", *described["preprocessing"]["input_shape"]]
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]  # no preference input
    assert "preference_input" not in described
    source = str(Path(mtlkit.__file__).parent).encode()
    assert source not in (run / "model.onnx").read_bytes()  # no stack traces of local files
    check = described["onnxruntime_check"]
    assert check["largest_difference"] <= check["tolerance"]
    # the new customers, prepared as the JSON says, give the model's outputs through onnxruntime
    loaded = mtlkit.load(run)
    new, origin = read_table(EXAMPLE / "new_customers.csv")
    features = loaded.preprocessing.inputs(new.drop(columns="customer_id"), origin, quiet=True)
    got = session.run(None, {INPUT_NAME: features.numpy()})
    want = loaded(features)
    tolerance = rounding_tolerance(loaded.model)
    for name, value in zip(described["tasks"], got):
        scale = max(1.0, want[name].abs().max().item())
        torch.testing.assert_close(
            torch.from_numpy(value), want[name], rtol=0, atol=tolerance * scale
        )
    out = tmp_path / "elsewhere" / "customers.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and (out.parent / "customers.onnx.json").is_file()


def test_a_preference_runs_export_describes_its_second_input(
    tmp_path, offline_data, tiny_config, capsys
):
    """A trained COSMOS run (images: the preference as extra channels) exports with the
    preference as the graph's second input; the JSON names it and its constraint, and the graph
    serves the front's points that ``mtlkit.load`` serves."""
    from mtlkit.workflows import train

    run = tmp_path / "run"
    train(parse_config(tiny_config(model={"preference": "cosmos"})), run)
    assert main(["export", str(run), "--format", "onnx"]) == 0
    described = json.loads((run / "model.onnx.json").read_text())
    assert described["preference_input"] == {
        "name": PREFERENCE_NAME,
        "shape": [2],
        "dtype": "float32",
        "constraint": "K values >= 0 that sum to 1, one per task in the order of 'tasks'",
        "meaning": "the point of the trade-off front to serve, one preference for the whole "
        "batch (the uniform one is the run's default)",
    }
    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME, PREFERENCE_NAME]
    loaded = mtlkit.load(run)
    shape = described["preprocessing"]["input_shape"]
    inputs = torch.rand(3, *shape, generator=torch.Generator().manual_seed(2))
    tolerance = rounding_tolerance(loaded.model)
    for preference in ((1.0, 0.0), (0.3, 0.7)):
        loaded.model.set_preference(preference)
        want = loaded(inputs)
        feeds = {INPUT_NAME: inputs.numpy(), PREFERENCE_NAME: np.array(preference, np.float32)}
        for name, value in zip(described["tasks"], session.run(None, feeds)):
            scale = max(1.0, want[name].abs().max().item())
            torch.testing.assert_close(
                torch.from_numpy(value), want[name], rtol=0, atol=tolerance * scale
            )


def test_a_network_that_cannot_be_exported_names_the_operation(
    customers_run, tmp_path, monkeypatch, capsys
):
    """A trunk of the user's own with an operation ONNX has no translation for: exit 2, the
    operation named, no graph and no temporary file left."""
    monkeypatch.setitem(BACKBONES._entries, "twisted", _twisted)
    run = tmp_path / "run"
    shutil.copytree(customers_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["backbone"] = "twisted"  # same weights, one more operation
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    before = sorted(p.name for p in run.iterdir())
    assert main(["export", str(run), "--format", "onnx"]) == 2
    error = capsys.readouterr().err
    assert "model.sharing 'hard' on backbone 'twisted' cannot be exported to ONNX" in error
    assert "operation mtlkit_test.twist has no ONNX translation" in error
    assert sorted(p.name for p in run.iterdir()) == before
