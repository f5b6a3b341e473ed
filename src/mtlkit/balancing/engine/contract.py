"""One layer's share of the Gramian ``J Jᵀ``, from its input activations and its K output
gradients, without the K×P Jacobian.

A layer ``y = x Wᵀ (+ b)`` read as N rows (the batch, and for a convolution every output position
of every sample: the unfolded input patches) has input rows ``A`` (N × in) and, for task k, output
gradient rows ``Gₖ`` (N × out). Task k's weight gradient is ``GₖᵀA`` (out × in), so the layer adds

    ``⟨GᵢᵀA, GⱼᵀA⟩ = Σ_{r,s} (A Aᵀ)_{rs} (Gᵢ Gⱼᵀ)_{rs}``

to ``G_ij``. :func:`add_layer_gramian` takes the cheaper of two exact ways to form it:

* *rows*: the K weight gradients of a slice of the output units at a time (``Gₖ[:, c]ᵀ A``),
  their Gramian added slice by slice — about ``K·N·in·out + K²·in·out`` operations, at most
  ``_SLICE`` entries of them held at once;
* *kernel*: ``M = A Aᵀ`` (N × N) once, then ``⟨M Gᵢ, Gⱼ⟩`` — about ``N²·in + K·N²·out +
  K²·N·out`` operations, cheaper wherever N is small next to ``in`` (a fully connected layer, or
  a convolution deep in a trunk where few output positions remain).

Both sum in float64 (the solvers' working precision, as
:func:`~mtlkit.balancing.engine.accumulate.wide_gramian` does for J): the rows in float32 (the
dtype autograd would give them) converted per slice, the kernel from float64 operands.
Under data-parallel replicas the Gramian is that of the replica-mean Jacobian, which the kernel
cannot form from one replica's activations: the rows are averaged over the replicas before their
Gramian instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlkit.balancing.engine.accumulate import wide_gramian
from mtlkit.balancing.replicas import Replicas

__all__ = ["add_layer_gramian", "add_rows_gramian", "conv_rows"]

_SLICE = 1 << 20
"""Entries of weight-gradient rows (K × out-slice × in), or of the kernel (N × N), formed at once:
4 MiB of float32 rows, 8 MiB of float64 kernel."""


def conv_rows(
    inputs: Tensor,
    grads: Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[Tensor, Tensor]:
    """``A`` (N × in·k²) and ``G`` (K × N × out) of a 2-D convolution (groups 1): ``inputs`` is
    its (B, in, H, W) input, ``grads`` the K gradients (K, B, out, H', W') of its output; a row
    per sample and output position (N = B·H'·W')."""
    patches = F.unfold(inputs, kernel, dilation=dilation, padding=padding, stride=stride)
    rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (B·L, in·k²)
    k, b, out = grads.shape[:3]
    per_row = grads.reshape(k, b, out, -1).transpose(2, 3).reshape(k, -1, out)  # (K, B·L, out)
    return rows, per_row


def add_rows_gramian(gramian: Tensor, rows: Tensor, replicas: Replicas | None) -> None:
    """Add the Gramian of ``rows`` (K × anything: per-task gradients) to ``gramian``, the rows
    averaged over ``replicas`` first."""
    rows = rows.reshape(rows.shape[0], -1)
    if replicas is not None:
        rows = rows.contiguous()
        replicas.mean_(rows)
    wide_gramian(rows, into=gramian)


@torch.no_grad()
def add_layer_gramian(
    gramian: Tensor, inputs: Tensor, grads: Tensor, replicas: Replicas | None
) -> None:
    """Add ``Σ_{r,s} (A Aᵀ)_{rs} (Gᵢ Gⱼᵀ)_{rs}`` to ``gramian`` (K × K): ``inputs`` is A (N × in),
    ``grads`` G (K × N × out); by the cheaper exact way (see the module's docstring)."""
    k, n, out = grads.shape
    width = inputs.shape[1]
    rows_cost = k * n * width * out + k * k * width * out
    kernel_cost = n * n * width + k * n * n * out + k * k * n * out
    if replicas is None and n * n <= _SLICE and kernel_cost < rows_cost:
        _add_by_kernel(gramian, inputs, grads)
    else:
        _add_by_rows(gramian, inputs, grads, replicas)


def _out_slices(out: int, per_unit: int) -> list[slice]:
    """Slices of the ``out`` units of at most ``_SLICE`` entries when each costs ``per_unit``."""
    step = max(1, _SLICE // max(1, per_unit))
    return [slice(i, min(i + step, out)) for i in range(0, out, step)]


def _add_by_rows(gramian: Tensor, inputs: Tensor, grads: Tensor, replicas: Replicas | None) -> None:
    """The K weight gradients of a slice of output units at a time, and their Gramian."""
    k, _, out = grads.shape
    inputs = inputs.to(grads.dtype)
    for units in _out_slices(out, k * inputs.shape[1]):
        rows = grads[:, :, units].transpose(1, 2) @ inputs  # (K, units, in)
        add_rows_gramian(gramian, rows, replicas)


def _add_by_kernel(gramian: Tensor, inputs: Tensor, grads: Tensor) -> None:
    """``⟨M Gᵢ, Gⱼ⟩`` with ``M = A Aᵀ``, in float64, a slice of output units at a time."""
    wide = gramian.dtype
    a = inputs.to(wide)
    kernel = a @ a.T
    k, n, out = grads.shape
    for units in _out_slices(out, k * n):
        g = grads[:, :, units].to(wide)  # (K, N, units)
        mixed = kernel @ g  # M Gₖ for every k
        gramian.addmm_(mixed.reshape(k, -1), g.reshape(k, -1).T)
