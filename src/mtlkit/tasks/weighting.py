"""Built-in per-row loss weights and the soft-label terms of a classification loss.

* :class:`InverseFrequency` — each row weighs ``N / (C · n_y)``, the inverse of its class's share
  of the training rows (a class seen half as often counts twice as much);
* :func:`focal_factor` — the focal loss's ``(1 − p_y)^γ`` (Lin et al., 2017): rows the model
  already gets right count less; ``γ = 0`` leaves the loss as it is;
* :func:`distillation_per_row` — ``T² · KL(p_teacher,T ‖ p_student,T)`` per row (Hinton et al.,
  2015), the soft-label part of a distilled loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class InverseFrequency:
    """Per-row weights ``N / (C · n_y)`` from the training split's class counts ``n``.

    A class absent from training gets weight 0 (its rows cannot occur in training batches).

    Args:
        class_counts: (C,) rows per class in the training split.
    """

    def __init__(self, class_counts: Tensor) -> None:
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        if counts.dim() != 1 or len(counts) < 2 or bool((counts < 0).any()):
            raise ValueError(
                f"class_counts must be (C,) non-negative counts with C ≥ 2, got {counts.tolist()}."
            )
        present = counts > 0
        per_class = counts.sum() / (int(present.sum()) * counts.clamp(min=1))
        self.class_weights = torch.where(present, per_class, 0.0).float()
        """(C,) the weight of a row of each class."""

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        return self.class_weights.to(target.device)[target.clamp(min=0)]


def focal_factor(output: Tensor, target: Tensor, gamma: float) -> Tensor:
    """(N,) ``(1 − p_y)^γ``, with ``p_y`` the softmax probability of each row's class (on the
    graph: the focal loss differentiates through it)."""
    log_p = F.log_softmax(output, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    return (1.0 - log_p.exp()).clamp(min=0.0).pow(gamma)


def distillation_per_row(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """(N,) ``T² · KL(softmax(teacher / T) ‖ softmax(student / T))`` of each row; no gradient
    reaches the teacher."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"the teacher's outputs have shape {tuple(teacher.shape)}, the student's "
            f"{tuple(student.shape)}: a teacher must score the same classes."
        )
    log_student = F.log_softmax(student / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.detach().to(student.dtype) / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(dim=1)
    return temperature**2 * kl
