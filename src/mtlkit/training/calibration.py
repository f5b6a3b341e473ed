"""Temperature scaling (Guo et al., 2017): one temperature per classification head, fitted on
validation data after training so that ``softmax(z / T)`` is calibrated; the predicted classes
do not change. The heads to fit are the :class:`~mtlkit.models.TemperatureScaled` ones."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from mtlkit.data import Batch
from mtlkit.models import MultiTaskModel, TemperatureScaled
from mtlkit.tasks import Task


@torch.no_grad()
def _logits(
    model: MultiTaskModel,
    names: Sequence[str],
    batches: Iterable[Batch],
    device: torch.device,
    memory_format: torch.memory_format,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per task, the unscaled logits and class targets of its labelled validation rows."""
    model.eval()
    collected: dict[str, tuple[list, list]] = {name: ([], []) for name in names}
    for batch in batches:
        batch = batch.to(device, memory_format)
        features = model.encode(batch.inputs)
        for name in names:
            if name not in batch.targets:
                continue
            z = features if isinstance(features, torch.Tensor) else features[name]
            logits, target = model.heads[name].head(z).float(), batch.targets[name]
            mask = batch.masks.get(name)
            if mask is not None:
                logits, target = logits[mask], target[mask]
            collected[name][0].append(logits)
            collected[name][1].append(target)
    return {name: (torch.cat(z), torch.cat(y)) for name, (z, y) in collected.items() if z}


def fit_temperatures(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    batches: Iterable[Batch],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, float]:
    """Fit the temperature of every :class:`TemperatureScaled` head of ``model`` to minimise the
    validation negative log-likelihood (L-BFGS on log T); set it in the head and return it.

    Raises:
        ValueError: the model has no ``heads`` to fit.
    """
    heads = getattr(model, "heads", None)
    if heads is None:
        raise ValueError(f"{type(model).__name__} has no `heads` whose temperature to fit.")
    names = [t.name for t in tasks if isinstance(heads[t.name], TemperatureScaled)]
    fitted: dict[str, float] = {}
    for name, (logits, target) in _logits(model, names, batches, device, memory_format).items():
        temperature = best_temperature(logits, target)
        heads[name].temperature.fill_(temperature)
        fitted[name] = temperature
    return fitted


def best_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The T > 0 minimising the mean cross-entropy of ``logits / T`` against ``target``."""
    log_t = torch.zeros((), device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(nll)
    return float(log_t.detach().exp())
