"""Per-pixel predictions as pictures: colour maps of segmentation, depth and normals, the report's
figure of predicted maps beside their targets, and PNG files for ``mtlkit predict``.

Colours: a segmentation class takes a colour of matplotlib's ``tab20`` palette; a depth is
shaded with ``viridis`` over a range (a target's and its prediction's alike, so that they
compare); a normal ``n`` is the colour ``(n + 1) / 2``. Void or invalid pixels are black.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure as MplFigure
from matplotlib.image import imsave

from mtlkit.tasks import DepthTask, NormalsTask, SegmentationTask, Task

__all__ = ["MapSamples", "colour", "map_kind", "maps_png", "sample_maps", "write_map_pngs"]

SAMPLES = 4
"""The test images the report shows."""


def map_kind(task: Task) -> str | None:
    """``segmentation``, ``depth`` or ``normals`` for a per-pixel task, else ``None``."""
    for kind, cls in (
        ("segmentation", SegmentationTask),
        ("depth", DepthTask),
        ("normals", NormalsTask),
    ):
        if isinstance(task, cls):
            return kind
    return None


def colour(kind: str, values: np.ndarray, span: tuple[float, float] | None = None) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] picturing one map: (H, W) classes or depths, (3, H, W) normals.

    ``span``: the depth range shaded from dark to bright (default: the map's valid range).
    """
    if kind == "segmentation":
        palette = np.asarray(colormaps["tab20"].colors)
        picture = palette[np.clip(values, 0, None) % len(palette)]
        picture[values < 0] = 0.0
        return picture
    if kind == "depth":
        valid = np.isfinite(values) & (values > 0)
        low, high = span if span is not None else depth_span(values)
        shade = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
        picture = colormaps["viridis"](np.where(valid, shade, 0.0))[..., :3]
        picture[~valid] = 0.0
        return picture
    picture = np.clip((np.moveaxis(values, 0, -1) + 1.0) / 2.0, 0.0, 1.0)
    picture[np.abs(values).sum(0) == 0] = 0.0
    return picture


def depth_span(values: np.ndarray) -> tuple[float, float]:
    """The range of the valid (finite, > 0) depths of ``values``; (0, 1) when there are none."""
    valid = values[np.isfinite(values) & (values > 0)]
    return (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)


@dataclass
class MapSamples:
    """A few inputs with every per-pixel task's targets and predictions, for a report.

    Attributes:
        inputs: (n, C, H, W) images.
        kinds: task -> ``segmentation``, ``depth`` or ``normals``.
        targets: task -> (n, H, W) or (n, 3, H, W) targets.
        predictions: task -> the predictions shaped like the targets.
    """

    inputs: np.ndarray
    kinds: dict[str, str]
    targets: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]


@torch.no_grad()
def sample_maps(
    model: torch.nn.Module,
    tasks: Sequence[Task],
    inputs: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    count: int = SAMPLES,
) -> MapSamples | None:
    """The first ``count`` inputs' maps for every per-pixel task (``None`` without one); the
    model runs in eval mode and is left as it was."""
    kinds = {task.name: kind for task in tasks if (kind := map_kind(task)) is not None}
    if not kinds:
        return None
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chosen = inputs[:count]
    outputs = model(chosen.to(device))
    model.train(was_training)
    by_name = {task.name: task for task in tasks}
    predictions = {name: np.stack(by_name[name].predict(outputs[name])["pred"]) for name in kinds}
    truth = {name: targets[name][:count].numpy() for name in kinds}
    truth = {
        name: value[:, 0] if kinds[name] == "depth" and value.ndim == 4 else value
        for name, value in truth.items()
    }
    return MapSamples(chosen.numpy(), kinds, truth, predictions)


def _input_picture(image: np.ndarray) -> np.ndarray:
    picture = np.moveaxis(image, 0, -1)
    if picture.shape[-1] == 1:
        picture = picture.repeat(3, -1)
    return np.clip(picture[..., :3], 0.0, 1.0)


def maps_png(samples: MapSamples) -> bytes:
    """A grid: one row per sample; the input, then each task's target and prediction."""
    tasks = list(samples.kinds)
    columns = 1 + 2 * len(tasks)
    rows = len(samples.inputs)
    figure = MplFigure(figsize=(1.6 * columns, 1.6 * rows + 0.3), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for row in range(rows):
        pictures = [("input", _input_picture(samples.inputs[row]))]
        for task in tasks:
            kind, target = samples.kinds[task], samples.targets[task][row]
            span = depth_span(target) if kind == "depth" else None
            pictures.append((f"{task} target", colour(kind, target, span)))
            pictures.append(
                (f"{task} predicted", colour(kind, samples.predictions[task][row], span))
            )
        for axis, (title, picture) in zip(axes[row], pictures):
            axis.imshow(picture, interpolation="nearest")
            axis.set_axis_off()
            if row == 0:
                axis.set_title(title, fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_map_pngs(folder: Path, kind: str, maps: np.ndarray) -> list[Path]:
    """One PNG per map of ``maps`` in ``folder`` (``<i>.png``, created); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, values in enumerate(maps):
        path = folder / f"{index}.png"
        imsave(path, colour(kind, values))
        paths.append(path)
    return paths
