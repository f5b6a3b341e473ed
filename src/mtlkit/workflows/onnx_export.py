"""Export a run's network as one ONNX graph, checked by onnxruntime (``mtlkit export --format
onnx``; needs the ``onnx`` extra: ``pip install 'mtlkit[onnx]'``).

The graph comes from PyTorch's current exporter (``torch.onnx.export(..., dynamo=True)``, which
captures the network with ``torch.export``). It reads one float32 input named ``inputs`` of
shape ``(batch, *input_shape)`` with a dynamic batch — the rows (or images) after the run's
preprocessing — and has one output per task, named after the task: the head's raw output (see
:data:`OUTPUT_MEANINGS`). A preference-conditioned network (``model.preference``) reads a second
input, :data:`PREFERENCE_NAME`: the front's point to serve. Before the file is put in place,
onnxruntime runs it on random inputs at two batch sizes (and, for a preference-conditioned one,
a different random preference at each) and its outputs must equal PyTorch's within float32
rounding (:func:`rounding_tolerance`). The JSON beside the graph states what a deployment
needs besides it: the fitted preprocessing (``preprocessing.json`` of the run), each output's
meaning, and the run's config. Noisy views (``eval.views``) and the post-processing of
``mtlkit predict`` (softmax or sigmoid, the labels' names, a regression target's scale) stay
outside the graph: the JSON says how to apply them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtlkit.atomic import atomic_output, write_text_atomic
from mtlkit.config import ConfigError
from mtlkit.models import MultiTaskModel, PreferenceModel
from mtlkit.models.pamal import ParetoManifold
from mtlkit.training import load_checkpoint
from mtlkit.workflows.export import describe_run
from mtlkit.workflows.restore import load_weights
from mtlkit.workflows.run_dir import RunDir

__all__ = [
    "CHECK_BATCHES",
    "INPUT_NAME",
    "OUTPUT_MEANINGS",
    "PREFERENCE_NAME",
    "ExportError",
    "GraphCheck",
    "check_graph",
    "export_onnx",
    "onnx_graph",
    "rounding_tolerance",
]

INPUT_NAME = "inputs"
"""The graph's input: the model's inputs, after the run's preprocessing."""
PREFERENCE_NAME = "preference"
"""A preference-conditioned network's second input: one preference of shape (K,) for the whole
batch (K values ≥ 0 that sum to 1, in the tasks' order), as
:meth:`~mtlkit.models.PreferenceModel.set_preference` takes it."""
PREFERENCE_CONSTRAINT = "K values >= 0 that sum to 1, one per task in the order of 'tasks'"
EXAMPLE_BATCH = 2
"""The batch size the network is captured at (torch.export treats sizes 0 and 1 as constants)."""
CHECK_BATCHES = (1, 3)
"""The batch sizes onnxruntime checks the graph at (neither is the captured one)."""
INSTALL = "pip install 'mtlkit[onnx]'"
OUTPUT_MEANINGS = {
    "classification": "logits over the labels, in their order (softmax: the probabilities)",
    "binary": "one logit (sigmoid: the probability of the second, positive label)",
    "multilabel": "one logit per label (sigmoid: each label's probability)",
    "regression": "the standardised value (times target_std, plus target_mean: the target)",
}
"""What each task type's output in the graph is, and how ``mtlkit predict`` reads it."""
_UNIT_ROUNDOFF = 2.0**-24
"""u: float32 rounds every operation's exact result to within a relative 2⁻²⁴."""


class ExportError(ConfigError):
    """The run's network (its configured architecture or trunk) cannot be exported to ONNX, or
    the ``onnx`` extra is missing; the message names the operation that blocks it, or the fix."""


@dataclass(frozen=True)
class GraphCheck:
    """How onnxruntime's outputs compared with PyTorch's (both float32).

    Attributes:
        batches: the batch sizes run.
        largest_difference: the largest ``|onnxruntime − PyTorch|`` over every output, each
            divided by ``max(1, max |PyTorch's output|)``.
        tolerance: what float32 rounding allows for that quantity (:func:`rounding_tolerance`).
    """

    batches: tuple[int, ...]
    largest_difference: float
    tolerance: float


class _TaskOutputs(nn.Module):
    """The model's forward pass with its outputs as a tuple in task order (the graph's outputs,
    named after the tasks)."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(inputs)
        return tuple(outputs[name] for name in self.model.task_names)


class _PreferenceTaskOutputs(_TaskOutputs):
    """A preference-conditioned model's forward pass at the preference given as an input (in
    place of its ``preference`` buffer), its outputs as a tuple in task order."""

    def forward(  # type: ignore[override]  # the preference is a second input
        self, inputs: Tensor, preference: Tensor
    ) -> tuple[Tensor, ...]:
        outputs = _at_preference(self.model, inputs, preference)
        return tuple(outputs[name] for name in self.model.task_names)


def _at_preference(model: nn.Module, inputs: Tensor, preference: Tensor) -> dict[str, Tensor]:
    """``model(inputs)`` with its ``preference`` buffer replaced by ``preference`` (the model
    itself unchanged)."""
    return functional_call(model, {"preference": preference}, (inputs,))


def onnx_graph(model: MultiTaskModel, input_shape: tuple[int, ...], path: Path) -> None:
    """Write ``model`` (on the CPU, float32; in eval mode, its own mode kept) as an ONNX graph to
    ``path``: input :data:`INPUT_NAME` of shape ``(batch, *input_shape)`` with a dynamic batch
    (and, for a :class:`~mtlkit.models.PreferenceModel`, input :data:`PREFERENCE_NAME` of shape
    ``(K,)``), one output per task named after it.

    Raises:
        ExportError: the exporter is not installed, or an operation of the network has no ONNX
            translation (named in the message).
    """
    _require("onnxscript")
    _require("onnx")
    example = torch.zeros(EXAMPLE_BATCH, *input_shape)
    batch = {0: torch.export.Dim("batch")}
    wrapper: _TaskOutputs
    if isinstance(model, PreferenceModel):
        wrapper = _PreferenceTaskOutputs(model)
        arguments: tuple[Tensor, ...] = (example, model.preference.detach().clone())
        names, dynamic = [INPUT_NAME, PREFERENCE_NAME], (batch, None)
    else:
        wrapper, arguments, names, dynamic = _TaskOutputs(model), (example,), [INPUT_NAME], (batch,)
    training = model.training
    try:
        with _quiet_exporter():
            torch.onnx.export(
                wrapper.eval(),
                arguments,
                str(path),
                input_names=names,
                output_names=list(model.task_names),
                dynamic_shapes=dynamic,
                external_data=False,
                verbose=False,
            )
    except torch.onnx.OnnxExporterError as error:
        raise ExportError(_blocking(error)) from None
    finally:
        model.train(training)
    _strip_notes(path)


def _strip_notes(path: Path) -> None:
    """Remove the exporter's notes on every node (the PyTorch source and stack trace it came
    from: local file paths, and most of a small graph's size); the computation is untouched."""
    import onnx

    graph = onnx.load(str(path))
    for nodes in [graph.graph.node, *(function.node for function in graph.functions)]:
        for node in nodes:
            del node.metadata_props[:]
    onnx.save(graph, str(path))


def check_graph(
    model: MultiTaskModel,
    input_shape: tuple[int, ...],
    path: Path,
    batches: tuple[int, ...] = CHECK_BATCHES,
    seed: int = 0,
) -> GraphCheck:
    """Run the graph at ``path`` with onnxruntime on standard-normal inputs of each batch size
    and compare every output with ``model``'s. A :class:`~mtlkit.models.PreferenceModel` is run
    at a different preference for each batch size, drawn uniformly from the simplex.

    Raises:
        ExportError: onnxruntime is not installed; the graph's batch size is fixed (an operation
            reads it as a number); or an output differs by more than float32 rounding allows.
    """
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = session.get_inputs()[0].shape[0]
    if not isinstance(batch, str):
        raise ExportError(
            f"the exported graph fixed the batch size at {batch}: an operation of the network "
            "reads the batch size as a Python number (len(x), int(x.shape[0]), x.view(len(x), "
            "...)); use x.flatten / x.unflatten or -1 in view so that it stays symbolic."
        )
    tolerance = rounding_tolerance(model)
    generator = torch.Generator().manual_seed(seed)
    largest = 0.0
    for size in batches:
        inputs = torch.randn(size, *input_shape, generator=generator)
        feeds = {INPUT_NAME: inputs.numpy()}
        with torch.no_grad():
            if isinstance(model, PreferenceModel):
                preference = _uniform_on_simplex(model.num_tasks, generator)
                feeds[PREFERENCE_NAME] = preference.numpy()
                expected = _at_preference(model, inputs, preference)
            else:
                expected = model(inputs)
        got = session.run(list(model.task_names), feeds)
        for name, value in zip(model.task_names, got):
            reference = expected[name].float()
            scale = max(1.0, reference.abs().max().item())
            difference = (torch.from_numpy(value) - reference).abs().max().item() / scale
            if not difference <= tolerance:
                raise ExportError(
                    f"onnxruntime's output {name!r} at batch size {size} differs from PyTorch's "
                    f"by {difference:.3g} (relative to max(1, |output|)), more than float32 "
                    f"rounding allows ({tolerance:.3g}): an operation translates inexactly."
                )
            largest = max(largest, difference)
    return GraphCheck(tuple(batches), largest, tolerance)


def _uniform_on_simplex(k: int, generator: torch.Generator) -> Tensor:
    """A (K,) float32 preference drawn uniformly from the simplex (Dirichlet(1, …, 1): K
    standard exponentials over their sum)."""
    exponentials = -torch.log1p(-torch.rand(k, generator=generator, dtype=torch.float64))
    return (exponentials / exponentials.sum()).float()


def rounding_tolerance(model: nn.Module) -> float:
    """How far two float32 evaluations of ``model`` (PyTorch's, onnxruntime's) may differ,
    relative to ``max(1, |output|)``: ``2·L·γₙ``.

    A dot product of ``n`` float32 terms is within ``γₙ·Σ|aᵢbᵢ|`` of the exact one, with
    ``γₙ = n·u/(1 − n·u)`` and ``u = 2⁻²⁴`` (Higham, *Accuracy and Stability of Numerical
    Algorithms*, §3.1); the activations, gates and normalisations between layers do not amplify
    an error (1-Lipschitz, or a softmax of bounded slope), so ``L`` weighted layers (every
    ``Linear`` and convolution counted, parallel ones too: an upper bound on the depth) add at
    most ``L·γₙ`` with ``n`` the largest fan-in, for inputs and weights whose products are of
    order one (standardised inputs, initialised or trained weights). Each evaluation is that
    close to the exact value in its own summation order, so the two are within twice it. A
    network whose weights are a sum of ``K`` weight sets (PaMaL) computes each weight within
    ``γ_K`` of its exact value, relative to the sum of the terms' magnitudes: each weighted layer
    then adds ``γ_K`` more, ``2·L·(γₙ + γ_K)`` in all.
    """
    fan_ins = [
        module.in_features
        if isinstance(module, nn.Linear)
        else module.in_channels // module.groups * prod(module.kernel_size)
        for module in model.modules()
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)
    ]
    n = max(fan_ins, default=1)
    mixed = max(
        (len(module.sets) for module in model.modules() if isinstance(module, ParetoManifold)),
        default=0,
    )
    return 2 * max(len(fan_ins), 1) * (_gamma(n) + _gamma(mixed))


def _gamma(n: int) -> float:
    """Higham's γₙ in float32: the relative error bound of a sum of ``n`` products."""
    return n * _UNIT_ROUNDOFF / (1 - n * _UNIT_ROUNDOFF)


def export_onnx(
    run_dir: str | Path, out: str | Path | None = None
) -> tuple[Path, Path, GraphCheck]:
    """Write the selected weights (``best.pt``) of the run in ``run_dir`` as one ONNX graph,
    checked by onnxruntime, and a JSON description beside it (the graph's name + ``.json``): the
    graph's inputs and outputs, the fitted preprocessing, the tasks, the selected epoch, the
    mtlkit version and the resolved config. Both are written atomically. Default:
    ``<run>/model.onnx``.

    Returns:
        The paths of the graph and of the description, and onnxruntime's check.

    Raises:
        ConfigError: the folder is no run folder, or has no ``preprocessing.json``.
        ExportError: the network cannot be exported (the message names the operation), or the
            ``onnx`` extra is missing.
        CheckpointError: ``best.pt`` is missing or unreadable (the run has not finished).
    """
    _require("onnxscript")
    _require("onnxruntime")
    folder = RunDir(Path(run_dir))
    config = folder.read_config()
    saved = folder.read_preprocessing()
    run = load_weights(folder, config, saved, "cpu")
    specs = {spec.name: spec for spec in saved.specs}
    graph = Path(out) if out is not None else folder.path / "model.onnx"
    description = graph.with_name(f"{graph.name}.json")
    try:
        with atomic_output(graph) as temporary:
            onnx_graph(run.model, saved.input_shape, temporary)
            check = check_graph(run.model, saved.input_shape, temporary)
    except ExportError as error:
        raise ExportError(
            f"{folder.path}: model.sharing {config.model.sharing!r} on backbone "
            f"{config.model.backbone!r} cannot be exported to ONNX: {error}"
        ) from None
    summary: dict[str, Any] = {
        "graph": graph.name,
        "input": {"name": INPUT_NAME, "shape": ["batch", *saved.input_shape], "dtype": "float32"},
        **_preference_input(run.model),
        "outputs": {  # in the graph's order
            name: {
                "type": specs[name].type,
                "meaning": OUTPUT_MEANINGS.get(specs[name].type, "the head's raw output"),
            }
            for name in run.model.task_names
        },
        "preprocessing": json.loads(folder.preprocessing.read_text()),
        "onnxruntime_check": {
            "batches": list(check.batches),
            "largest_difference": check.largest_difference,
            "tolerance": check.tolerance,
        },
        **describe_run(config, load_checkpoint(folder.best).get("epoch")),
    }
    write_text_atomic(description, json.dumps(summary, indent=2))
    return graph, description, check


def _preference_input(model: MultiTaskModel) -> dict[str, Any]:
    """The description's ``preference_input`` entry for a preference-conditioned ``model`` (the
    graph's second input); none for any other."""
    if not isinstance(model, PreferenceModel):
        return {}
    return {
        "preference_input": {
            "name": PREFERENCE_NAME,
            "shape": [model.num_tasks],
            "dtype": "float32",
            "constraint": PREFERENCE_CONSTRAINT,
            "meaning": "the point of the trade-off front to serve, one preference for the "
            "whole batch (the uniform one is the run's default)",
        }
    }


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's notes to itself (its registry lists the torchvision operations it
    skips, and its dependencies warn of deprecations): a failure still raises."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        registry.setLevel(level)


def _require(module: str) -> None:
    """Import ``module``, or raise :class:`ExportError` naming the extra that installs it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"ONNX export needs {module}, which is not installed: {INSTALL}."
        ) from None


_NO_FUNCTION = re.compile(r"No ONNX function found for <OpOverload\(op='([\w.:]+)'")
_NODE_TARGET = re.compile(r"target=torch\.ops\.([\w.]+)")


def _blocking(error: BaseException) -> str:
    """The exporter's failure in one sentence naming the operation that blocks it."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = "\n".join(str(e) for e in chain)
    for pattern in (_NO_FUNCTION, _NODE_TARGET):
        found = pattern.search(text)
        if found:
            return (
                f"operation {found.group(1)} has no ONNX translation in torch "
                f"{torch.__version__}'s exporter; replace it in the network, or share the "
                "safetensors export instead (mtlkit export RUN_DIR)."
            )
    lines = [line.strip() for e in chain[1:] or chain for line in str(e).splitlines()]
    first = next((line for line in lines if line), type(chain[-1]).__name__)
    return f"torch.export could not capture the network ({first})."
