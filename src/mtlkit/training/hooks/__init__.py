"""The hooks of the training loop: one object per optional concern, each with its own state.

The loop (:class:`~mtlkit.training.Trainer`) runs one :func:`~mtlkit.training.step.training_step`
per batch and calls every hook at the points below, in the order the hooks were given; a hook
overrides only the points it uses (the others do nothing)::

    before_step(step)        inside the forward context: noise, teachers' soft labels, a snapshot
    after_forward(step)      the heads' outputs are in: the fp16 loss scale
    before_backward(step)    the task losses are in, the graph is whole: probes, task cosines
    allow_update(step)       after balancer.backward: the loss scale, penalties, the guard
    after_update(step)       after optimizer.step: teachers follow the student, penalty sums
    after_step(step, fit)    every step: epoch sums, the guard's read, checkpoints and signals
    end_epoch(fit)           the epoch's training pass is over: sums, validation and selection
    epoch_fields(fit)        what the hook adds to the epoch's record
    after_epoch(fit)         the epoch is recorded: the checkpoint, a requested stop

A checkpoint holds ``{hook.name: hook.state_dict()}`` beside the model, optimizer, scheduler
and balancer, so a hook that keeps anything a resume needs saves it by its own
:meth:`Hook.state_dict`. A hook whose state differs between processes (a noise generator
seeded per rank) sets :attr:`Hook.per_process`: the checkpoint then keeps one state per rank.
"""

from __future__ import annotations

from mtlkit.training.hooks.base import Hook, StepState

__all__ = ["Hook", "StepState"]
