"""``train.compile``: the compiled encoder trains every kind of method as the eager one does.

The gradient methods differentiate the trunk's graph once per task; the compiled graph must allow
it (AOTAutograd's donated buffers off). The ``aot_eager`` backend runs the same AOTAutograd graphs
as ``inductor`` without generating C++ (seconds instead of a minute on 2 cores); inductor itself
is measured by ``benchmarks/precision_compile.py``. Compiled and eager steps differ by the
reassociation of float32 sums only: a few ulps of the largest gradient entry per step.
"""

from __future__ import annotations

import pytest
import torch

from mtlkit.balancing import create
from mtlkit.data import Split, TensorBatches
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer
from mtlkit.training.compiled import compile_encoder

TASKS = [ClassificationTask(f"t{k}", num_classes=3) for k in range(3)]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained(name: str, compiled: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (1, 5, 5), hidden=[16, 16], batch_norm=True)
    model = HardSharing(trunk, {t.name: classification_head(16, 3) for t in TASKS})
    if compiled:
        compile_encoder(model, backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, TASKS, create(name, num_tasks=3), optimizer, progress=False)
    gen = torch.Generator().manual_seed(1)
    split = Split(
        torch.randn(24, 1, 5, 5, generator=gen),
        {t.name: torch.randint(0, 3, (24,), generator=gen) for t in TASKS},
    )
    trainer.train_epoch(TensorBatches(split, 8), 1)
    trainer.evaluate(TensorBatches(split, 24))  # eval mode: a second compiled graph
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ew", "upgrad", "pcgrad", "mgda-ub", "gradnorm"])
def test_a_compiled_encoder_trains_like_the_eager_one(name):
    eager, compiled = _trained(name, False), _trained(name, True)
    for a, b in zip(eager, compiled):
        scale = float(a.abs().max())
        torch.testing.assert_close(b, a, rtol=0, atol=64 * torch.finfo(a.dtype).eps * scale)
