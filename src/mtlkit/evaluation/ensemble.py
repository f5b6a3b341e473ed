"""Head ensembles: several heads that predict the same classes, combined as the weighted mean of
their probabilities, ``p = Σₖ wₖ·softmax(zₖ)`` with weights ``w`` on the simplex.

The weights are fitted on held-out data (validation) by maximum likelihood: they minimise the
mean negative log-likelihood ``−(1/N) Σₙ log Σₖ wₖ pₖₙ`` of the true classes, where ``pₖₙ`` is the
probability head k gives sample n's class. This is the weights of a mixture with fixed
components, a convex problem; the EM iteration ``wₖ ← (1/N) Σₙ wₖpₖₙ / Σⱼ wⱼpⱼₙ`` never increases
it and converges to its minimum (every fixed point with all ``wₖ > 0`` is optimal), from the
uniform weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class HeadEnsemble:
    """Heads of a shared label space combined by fixed weights.

    Attributes:
        tasks: the heads' tasks.
        weights: one non-negative weight per task, summing to 1.
    """

    tasks: tuple[str, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.tasks) < 2 or len(self.weights) != len(self.tasks):
            raise ValueError(
                f"an ensemble needs two or more heads and one weight per head, got tasks "
                f"{list(self.tasks)} and weights {list(self.weights)}."
            )
        if min(self.weights) < 0 or abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError(f"the weights must be ≥ 0 and sum to 1, got {list(self.weights)}.")

    def probabilities(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """The (N, C) weighted mean of the heads' class probabilities, from their logits."""
        return sum(
            weight * torch.softmax(outputs[task].float(), dim=-1)
            for task, weight in zip(self.tasks, self.weights)
        )


def fit_weights(
    probabilities: Sequence[Tensor], targets: Tensor, *, iterations: int = 1000
) -> tuple[float, ...]:
    """The simplex weights of the heads that minimise the mean negative log-likelihood of
    ``targets`` under ``Σₖ wₖ·probabilities[k]`` (EM, see the module docstring).

    Args:
        probabilities: per head, the (N, C) class probabilities of the same N samples.
        targets: the (N,) true classes.
        iterations: EM steps at most (it stops earlier once the weights move less than 1e-12).

    Raises:
        ValueError: fewer than two heads, no sample, or shapes that disagree.
    """
    if len(probabilities) < 2:
        raise ValueError("fit_weights needs the probabilities of two or more heads.")
    shapes = {tuple(p.shape) for p in probabilities}
    if len(shapes) != 1 or len(targets) == 0 or len(targets) != probabilities[0].shape[0]:
        raise ValueError(
            f"the heads' probabilities must share one (N, C) shape with N = {len(targets)} "
            f"targets (N > 0); got shapes {sorted(shapes)}."
        )
    # (K, N): the probability each head gives each sample's true class
    likelihood = torch.stack(
        [p.double().gather(1, targets.view(-1, 1)).squeeze(1) for p in probabilities]
    ).clamp_min(torch.finfo(torch.float64).tiny)
    weights = torch.full((len(probabilities),), 1.0 / len(probabilities), dtype=torch.float64)
    for _ in range(iterations):
        responsibility = weights[:, None] * likelihood
        updated = (responsibility / responsibility.sum(0)).mean(1)
        converged = (updated - weights).abs().max() < 1e-12
        weights = updated
        if converged:
            break
    weights = weights / weights.sum()
    return tuple(float(w) for w in weights)
