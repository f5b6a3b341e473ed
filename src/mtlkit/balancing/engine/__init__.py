"""The balancing engine: per-task gradients of the shared parameters, and the update into ``.grad``.

A gradient method needs the K×P Jacobian ``J`` of the K task losses with respect to the P shared
parameters (or only its Gramian ``J Jᵀ``). The engine obtains it once per step, from the graph the
forward pass built, by one of two strategies (:class:`Engine`):

* ``"loop"`` (the default): K vector-Jacobian products (``torch.autograd.grad`` with
  ``retain_graph``), one per task, through the one graph;
* ``"batched"``: a single vmapped backward (``is_grads_batched=True``) of the K tasks at once.

A user picks one with ``balancer.engine = Engine(strategy="batched")``; both give the same result
up to floating-point rounding. On CPU ``"loop"`` was the faster at every K measured
(``benchmarks/engine.py``).

What it costs: an exact Jacobian needs one trunk backward per task, so a step costs about
``F + K·B`` against ``F + B`` for a plain ``sum(losses).backward()`` (F the forward, B a backward).
On the seed CNN on CPU (B ≈ F) that is ≈ 1.5× at K = 2; the engine's own work (graph walks, head
passes, building J, ``G = J Jᵀ``, ``wᵀJ``) is within the timing noise of K bare
``torch.autograd.grad`` calls. Applying ``wᵀJ`` from the materialised J (under 1 ms at K = 2,
~50 ms at K = 40 on the seed CNN) is far cheaper than the extra trunk backward (~90 ms, 1 thread)
that a Jacobian-free Gramian would need for the update; so a Gramian method costs what a
Jacobian method costs (see :class:`~mtlkit.balancing.types.Need`).

When the training loop passes ``features`` (the shared representation ``z`` the task heads read)
and the losses reach the shared parameters only through ``z`` (hard parameter sharing; the engine
checks this on the graph, it does not assume it), the Jacobian is split at ``z``:
``J = G_z · ∂z/∂θ`` where row k of ``G_z`` is ``∂Lₖ/∂z``. The K rows of ``G_z`` cost one small
backward through each task's head, and the same pass yields the heads' own gradients; the trunk is
then differentiated once per task (``"loop"``) or once for all tasks (``"batched"``). Without
``features``, or when the losses reach a shared parameter around ``z`` (tied weights, cross-stitch),
the engine differentiates each loss through the whole graph instead; the result is the same.

Task-specific parameters (every parameter the losses depend on that is not shared) receive the
gradient of ``Σₖ Lₖ``: under hard sharing, each head gets exactly its own task's gradient.

Everything stays on the losses' device: nothing in a step reads a tensor back to the host.

Modules, one job each: :mod:`~mtlkit.balancing.engine.strategy` (:class:`Engine`),
:mod:`~mtlkit.balancing.engine.graph` (walking the graph, the cut at the features),
:mod:`~mtlkit.balancing.engine.gradients` (acquiring the Jacobian),
:mod:`~mtlkit.balancing.engine.accumulate` (writing into ``.grad``),
:mod:`~mtlkit.balancing.engine.backward` (the aggregators' backward paths),
:mod:`~mtlkit.balancing.engine.layers` and :mod:`~mtlkit.balancing.engine.contract` (the
layer-wise Gramian path) and
:mod:`~mtlkit.balancing.engine.jacobian` (:func:`task_jacobian`, :func:`task_gramian`).
"""

from mtlkit.balancing.engine.jacobian import task_gramian, task_jacobian
from mtlkit.balancing.engine.strategy import STRATEGIES, Engine, Strategy

__all__ = ["STRATEGIES", "Engine", "Strategy", "task_gramian", "task_jacobian"]
