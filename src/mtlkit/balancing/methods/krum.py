"""Krum and Multi-Krum: the task gradients closest to their neighbours (Byzantine-robust)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_int
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, work_dtype


@register("krum")
class Krum(GramianWeighting):
    """Krum: the mean of the n_selected gradients with the smallest summed distance to neighbours.

    Blanchard, El Mhamdi, Guerraoui & Stainer, "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent", NeurIPS 2017 (Krum, and Multi-Krum in §5); torchjd's ``Krum``.

    With f = ``n_byzantine`` rows that may be arbitrary (adversarial) and K ≥ f + 3, each
    gradient gᵢ scores the sum of its distances to its K − f − 2 nearest other gradients::

        s(i) = Σ_{j ∈ N(i)} ‖gᵢ − gⱼ‖,   ‖gᵢ − gⱼ‖² = Gᵢᵢ + Gⱼⱼ − 2Gᵢⱼ

    and d is the mean of the ``n_selected`` gradients of lowest score (weight 1/n_selected each,
    0 elsewhere). A gradient far from the others gets a large score and is not selected, whatever
    its size. Read off the Gramian (in float64). Ties go to the lower task index (torchjd: to
    ``topk``'s order). The paper sums squared distances; torchjd (and this class) sums distances.

    Args:
        n_byzantine: f ≥ 0, the number of rows that may be adversarial (needs K ≥ f + 3; default
            0, torchjd has no default).
        n_selected: how many gradients to average, 1 ≤ n_selected ≤ K (1: Krum; default 1).
    """

    def __init__(
        self, num_tasks: int | None = None, *, n_byzantine: int = 0, n_selected: int = 1
    ) -> None:
        super().__init__(num_tasks)
        self.n_byzantine = check_int("krum", "n_byzantine", n_byzantine)
        self.n_selected = check_int("krum", "n_selected", n_selected, low=1)
        if num_tasks is not None:
            self._check_tasks(num_tasks)

    def _check_tasks(self, k: int) -> None:
        if k < self.n_byzantine + 3:
            raise ValueError(
                f"krum needs at least n_byzantine + 3 = {self.n_byzantine + 3} tasks, got {k}: "
                "lower n_byzantine."
            )
        if k < self.n_selected:
            raise ValueError(
                f"krum: n_selected = {self.n_selected} exceeds the {k} tasks: lower n_selected."
            )

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_gramian(gramian)
        self._check_num_tasks(k)
        self._check_tasks(k)
        g = gramian.detach().to(work_dtype(gramian.device))
        sq = g.diagonal()
        distances = (sq[:, None] + sq[None, :] - 2.0 * g).clamp(min=0.0).sqrt()
        distances.fill_diagonal_(torch.inf)  # a gradient is not its own neighbour
        nearest = distances.sort(dim=1, stable=True).values[:, : k - self.n_byzantine - 2]
        scores = nearest.sum(dim=1)
        chosen = scores.argsort(stable=True)[: self.n_selected]
        weights = torch.zeros(k, dtype=gramian.dtype, device=gramian.device)
        weights[chosen] = 1.0 / self.n_selected
        return weights
