"""Checkpoints: atomic writes, ``weights_only``-safe loading, and the hooks' part of a training
state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mtlkit.atomic import atomic_output

if TYPE_CHECKING:
    from mtlkit.training.distributed import ProcessGroupReplicas
    from mtlkit.training.hooks import Hook


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or not one of ours."""


def require_hook_states(state: dict[str, Any], source: str = "this checkpoint") -> None:
    """Refuse a training state written before the loop saved its hooks' state (no ``hooks``):
    it cannot resume exactly.

    Raises:
        CheckpointError: naming ``source`` and what to do instead.
    """
    if "hooks" not in state:
        raise CheckpointError(
            f"{source} was written by an mtlkit whose training loop did not save its hooks' "
            "state (noise generators per process, the loss scale, penalty sums, task cosines), "
            "so it cannot resume exactly: finish the run with that version, or train it again."
        )


def hook_states(hooks: Sequence[Hook], replicas: ProcessGroupReplicas | None) -> dict[str, Any]:
    """Every hook's state by name; a per-process hook's as one entry per rank, gathered across
    ``replicas`` (every process must call it)."""
    states = {}
    for hook in hooks:
        state = hook.state_dict()
        if hook.per_process:
            states[hook.name] = [state] if replicas is None else replicas.gather(state)
        else:
            states[hook.name] = state
    return states


def load_hook_states(hooks: Sequence[Hook], state: dict[str, Any], rank: int) -> None:
    """Give every hook its part of the training ``state`` (a per-process hook, rank ``rank``'s).

    Raises:
        CheckpointError: a state without hook states (:func:`require_hook_states`), or one that
            lacks the state of one of ``hooks`` that has a state to restore.
    """
    require_hook_states(state)
    saved = state["hooks"]
    for hook in hooks:
        if hook.name not in saved:
            if hook.state_dict():
                raise CheckpointError(
                    f"the checkpoint has no state of the hook {hook.name!r}; resume with "
                    "the hooks it was written with."
                )
            continue
        hook_state = saved[hook.name]
        hook.load_state_dict(hook_state[rank] if hook.per_process else hook_state)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.

    The file appears complete or not at all: a crash mid-write leaves the previous one intact.
    """
    with atomic_output(Path(path)) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: no arbitrary code runs while loading."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first or pass the right run folder.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(
            f"{path} is not a readable mtlkit checkpoint ({type(error).__name__}: {error}); "
            "it may be truncated or from another program — retrain or restore a good copy."
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} holds no model weights; it is not an mtlkit checkpoint.")
    return state
