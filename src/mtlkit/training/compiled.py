"""``train.compile``: the model's shared encoder through :func:`torch.compile`.

The encoder (``model.encode``: the trunk, the expensive part) is compiled in place, as an
instance attribute, so that the model's ``state_dict`` keys, checkpoints and the heads are
untouched. The gradient methods differentiate the trunk once per task from one forward graph
(``retain_graph``); AOTAutograd's *donated buffers* (a memory saving that frees saved tensors
after the first backward) forbid that, so they are turned off.
"""

from __future__ import annotations

import torch
import torch._functorch.config as functorch_config

from mtlkit.models import MultiTaskModel

__all__ = ["compile_encoder"]


def compile_encoder(model: MultiTaskModel, backend: str = "inductor") -> None:
    """Replace ``model.encode`` by its compiled version (compiled on the first call) with
    ``torch.compile``'s ``backend``.

    Turns AOTAutograd's donated buffers off for the process: the backward graph is compiled and
    run at the first backward, so the setting must hold then too (it only trades memory).
    """
    functorch_config.donated_buffer = False
    model.encode = torch.compile(model.encode, backend=backend)  # type: ignore[method-assign]
