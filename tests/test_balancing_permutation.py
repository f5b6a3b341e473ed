"""UPGrad and DualProj do not depend on the order of the tasks, on rank-deficient float32
Jacobians (issue 23).

The projection onto a convex cone is unique, so ``d`` is a function of the *set* of task
gradients even where the weights are not unique (K > rank). The bar, 5e-7 absolute and relative,
sits above float32's rounding of ``d`` itself (6e-8·|d|) and far below the 1e-6..5e-6 that a
float32 Gramian and a float32 ``wᵀJ`` gave: their rounding errors differ between two orders of
the rows (≈P·6e-8·‖g‖² and ≈K·6e-8·Σ|wₖ|‖gₖ‖, and the dual cone's weights are large where it is
thin). Both products now run in float64, where what is left is the solver's own accuracy.
"""

from __future__ import annotations

import pytest
import torch

from mtlkit.balancing import create

TOL = 5e-7
SHAPES = [(20, 10, 10), (20, 10, 6), (9, 11, 5), (9, 11, 9)]
"""(K, P, rank): more tasks than dimensions, and fewer, both rank-deficient in the task space."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _jacobian(k, p, rank, seed):
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(k, rank, generator=gen, dtype=torch.float64)
    return (factor @ torch.randn(rank, p, generator=gen, dtype=torch.float64)).float()


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize(("k", "p", "rank"), SHAPES)
def test_the_direction_does_not_depend_on_the_order_of_the_tasks(name, k, p, rank):
    method = create(name, num_tasks=k)
    for seed in range(8):
        jac = _jacobian(k, p, rank, seed)
        direction = method.aggregate(jac)
        assert direction.dtype == torch.float32
        for trial in range(4):
            perm = torch.randperm(k, generator=torch.Generator().manual_seed(100 * seed + trial))
            permuted = method.aggregate(jac[perm])
            torch.testing.assert_close(permuted, direction, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_the_engine_writes_the_same_update_in_any_task_order(name):
    """Through ``backward``: K linear losses on one shared parameter, rows 20 × 10 of rank 6."""
    jac = _jacobian(20, 10, 6, 3)
    updates = []
    for perm in (torch.arange(20), torch.randperm(20, generator=torch.Generator().manual_seed(1))):
        theta = torch.zeros(10, requires_grad=True)
        losses = list(jac[perm] @ theta)
        create(name, num_tasks=20).backward(losses, [theta])
        updates.append(theta.grad)
    torch.testing.assert_close(updates[1], updates[0], atol=TOL, rtol=TOL)
