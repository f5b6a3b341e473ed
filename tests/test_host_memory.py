"""Freed host memory stays in the process: a step's large tensors reuse the last step's pages."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from mtlkit.training import host_memory
from mtlkit.training.host_memory import OPT_OUT, retain_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocate a 24 MiB tensor (under glibc's 32 MiB ceiling), then free it, in a process of its
# own (the setting is process-wide), and read glibc's accounts of its heap (mallinfo2).
_ONE_BLOCK = textwrap.dedent(
    """
    import ctypes, torch
    from mtlkit.training.host_memory import retain_freed_memory

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = Info
    retained = retain_freed_memory()
    mapped = mallinfo2().hblkhd  # bytes in blocks mapped on their own
    block = torch.ones(6 * 2**20)
    mapped_for_it = mallinfo2().hblkhd - mapped
    del block
    print(retained, mapped_for_it, mallinfo2().fordblks)  # then: free bytes kept in the heap
    """
)
_MIB = 2**20


@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc's")
def test_a_large_block_comes_from_the_heap_and_stays_there_when_freed():
    retained, mapped, kept = subprocess.run(
        [sys.executable, "-c", _ONE_BLOCK], capture_output=True, text=True, check=True
    ).stdout.split()
    assert retained == "True"
    # glibc's own first threshold (128 KiB) maps a 24 MiB block on its own, and unmaps it on
    # free (its pages then come back zeroed and faulted in by the next step); raised to 32 MiB,
    # the block is carved from the heap, and the heap is not trimmed when it is freed.
    assert int(mapped) == 0
    assert int(kept) >= 24 * _MIB


def test_the_environment_can_leave_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "0")
    assert retain_freed_memory.__wrapped__() is False


def test_nothing_is_set_off_linux(monkeypatch):
    monkeypatch.delenv(OPT_OUT, raising=False)
    monkeypatch.setattr(host_memory.sys, "platform", "darwin")
    assert retain_freed_memory.__wrapped__() is False


def test_every_training_workflow_keeps_freed_memory_on_a_cpu(
    monkeypatch, tiny_config, offline_data
):
    """``build_trainer``, through which train, finetune and add-task build their loop, asks
    for it on a CPU."""
    from mtlkit.config import parse_config
    from mtlkit.workflows import trainer as trainer_module
    from mtlkit.workflows.build import build_balancer, build_model, build_tasks, load_data

    calls = []
    monkeypatch.setattr(trainer_module, "retain_freed_memory", lambda: calls.append(1))
    config = parse_config(tiny_config())
    data = load_data(config)
    tasks = build_tasks(config, data.tasks, data.train)
    model = build_model(config, data.input_shape, tasks)
    balancer = build_balancer(config, len(tasks))
    trainer_module.build_trainer(config, model, tasks, balancer, torch.device("cpu"))
    assert calls == [1]
