"""The input-side techniques: noise (reproducible, absent in evaluation), batch normalisation in
multi-task and multi-input training, and voting over noisy views (M = 1 is plain evaluation)."""

from __future__ import annotations

import copy

import pytest
import torch

from mtlkit.balancing import create
from mtlkit.data import Batch, Split, TensorBatches
from mtlkit.models import HardSharing, create_backbone
from mtlkit.tasks import ClassificationTask, RegressionTask
from mtlkit.training import EMATeacher, InputNoise, Trainer, Views, evaluate, noise_generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOISE = InputNoise(gaussian=0.3, salt_pepper=0.1, shift=2)


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _model(batch_norm: bool = False) -> HardSharing:
    torch.manual_seed(0)
    trunk = create_backbone("lenet", (1, 16, 16), batch_norm=batch_norm)
    heads = {name: torch.nn.Linear(trunk.out_features, 3) for name in ("a", "b")}
    return HardSharing(trunk, heads)


def _tasks() -> list[ClassificationTask]:
    return [ClassificationTask("a", 3), ClassificationTask("b", 3)]


def _split(n: int = 24) -> Split:
    generator = torch.Generator().manual_seed(1)
    targets = {name: torch.randint(0, 3, (n,), generator=generator) for name in ("a", "b")}
    return Split(_images(n), targets)


def test_noise_is_reproducible_from_the_seed():
    x = _images()
    first = NOISE.draw(x, noise_generator(7, "cpu"))
    again = NOISE.draw(x, noise_generator(7, "cpu"))
    other = NOISE.draw(x, noise_generator(8, "cpu"))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, x)


def test_a_shift_moves_each_image_by_at_most_n_pixels():
    x = _images(8)
    shifted = InputNoise(shift=2).draw(x, noise_generator(0, "cpu"))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for image, original, low in zip(shifted, padded, x.amin(dim=(1, 2, 3))):
        source = original.clone()
        source[:, :2], source[:, -2:], source[:, :, :2], source[:, :, -2:] = low, low, low, low
        source[:, 2:-2, 2:-2] = original[:, 2:-2, 2:-2]
        crops = [source[:, r : r + 16, c : c + 16] for r in range(5) for c in range(5)]
        assert any(torch.equal(image, crop) for crop in crops)


def test_salt_and_pepper_replaces_about_the_fraction_asked():
    x = torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.25
    noisy = InputNoise(salt_pepper=0.2).draw(x, noise_generator(0, "cpu"))
    changed = (noisy != x).float().mean()
    # 51 200 values drawn with p = 0.2: the standard error of the fraction is ~0.002
    assert float(changed) == pytest.approx(0.2, abs=0.01)


def test_per_task_noise_draws_independently_for_each_task():
    x = _images()
    drawn = InputNoise(gaussian=0.5, per_task=True)(x, ["a", "b"], noise_generator(0, "cpu"))
    assert set(drawn) == {"a", "b"} and not torch.equal(drawn["a"], drawn["b"])


def test_training_sees_noise_and_evaluation_does_not():
    model = _model()
    seen: list[torch.Tensor] = []
    model.trunk.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    trainer = Trainer(
        model,
        _tasks(),
        create("ew", num_tasks=2),
        torch.optim.SGD(model.parameters(), lr=0.0),
        noise=NOISE,
        seed=3,
        progress=False,
    )
    split = _split(6)
    batch = Batch(split.inputs, split.targets)
    trainer.train_step(batch)
    assert torch.equal(seen[-1], NOISE.draw(split.inputs, noise_generator(3, "cpu")))
    noisy = trainer.evaluate(TensorBatches(split, 6))
    assert torch.equal(seen[-1], split.inputs)
    plain = evaluate(model, _tasks(), TensorBatches(split, 6), torch.device("cpu"))
    assert noisy == plain


def test_batch_norm_statistics_move_with_every_tasks_batch():
    """Multi-input: each task's batch goes through the trunk, so the running statistics are
    those of the tasks' batches taken one after the other."""
    model = _model(batch_norm=True)
    reference = copy.deepcopy(model.trunk)
    xa, xb = _images(5, seed=1), _images(7, seed=2) * 2.0
    model.train()
    model.encode({"a": xa, "b": xb})
    reference.train()
    reference(xa)
    after_a = copy.deepcopy(reference.state_dict())
    reference(xb)
    norms = [
        m for m in model.trunk.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert len(norms) == 3 and all(int(m.num_batches_tracked) == 2 for m in norms)
    for key, value in model.trunk.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
        if key.endswith("running_mean"):
            assert not torch.equal(value, after_a[key])  # task b's batch moved them


def test_batch_norm_is_an_option_of_every_built_in_trunk():
    for name, shape in (("cnn", (1, 16, 16)), ("lenet", (1, 16, 16)), ("mlp", (8,))):
        with_norm = create_backbone(name, shape, batch_norm=True)
        without = create_backbone(name, shape)
        assert any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in with_norm.modules()
        )
        assert not any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in without.modules()
        )


def test_one_view_is_plain_evaluation_exactly():
    model, split = _model(), _split()
    plain = evaluate(model, _tasks(), TensorBatches(split, 8), torch.device("cpu"))
    one = evaluate(
        model, _tasks(), TensorBatches(split, 8), torch.device("cpu"), views=Views(NOISE, 1)
    )
    assert one == plain
    x = split.inputs[:8]
    outputs = Views(NOISE, 1).outputs(model.eval(), x, _tasks(), noise_generator(0, "cpu"))
    for name, value in model(x).items():
        assert torch.equal(outputs[name], value)


@pytest.mark.parametrize("combine", ["vote", "mean"])
def test_voting_is_reproducible_from_the_seed(combine):
    model, x, tasks = _model().eval(), _images(8), _tasks()

    def combined(seed: int) -> dict[str, torch.Tensor]:
        views = Views(NOISE, 5, combine, seed)
        return views.outputs(model, x, tasks, views.generator("cpu"))

    first, again, other = combined(4), combined(4), combined(5)
    assert all(torch.equal(first[t], again[t]) for t in first)
    assert any(not torch.equal(first[t], other[t]) for t in first)
    reports = [
        evaluate(
            model,
            tasks,
            TensorBatches(_split(), 8),
            torch.device("cpu"),
            views=Views(NOISE, 5, combine, 4),
        )
        for _ in range(2)
    ]
    assert reports[0] == reports[1]


class _NoViews(ClassificationTask):
    """A task class of one's own without ``combine_views`` (attribute lookup hides it)."""

    def __getattribute__(self, name: str):
        if name == "combine_views":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_several_views_of_a_task_that_cannot_combine_them_are_refused_before_any_work():
    model, tasks = _model(), [_NoViews("a", 3), ClassificationTask("b", 3)]
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    batches = TensorBatches(_split(), 8)
    with pytest.raises(ValueError, match=r"\['a'\] cannot combine 5 views"):
        evaluate(model, tasks, batches, torch.device("cpu"), views=Views(NOISE, 5))
    assert calls == []
    one = evaluate(model, tasks, batches, torch.device("cpu"), views=Views(NOISE, 1))
    assert set(one) == {"a", "b"}  # one view needs no combining


def test_combining_views_by_vote_and_by_mean_probability():
    task = ClassificationTask("t", 3)
    # three views of two rows: row 0 votes 1, 1, 0; row 1 votes 2, 0, 0
    outputs = torch.tensor(
        [
            [[0.0, 1.0, 0.0], [0.0, 0.0, 9.0]],
            [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]],
            [[3.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
        ]
    )
    vote = task.combine_views(outputs, "vote").exp()
    assert torch.allclose(vote, torch.tensor([[1 / 3, 2 / 3, 0.0], [2 / 3, 0.0, 1 / 3]]))
    mean = task.combine_views(outputs, "mean").exp()
    assert torch.allclose(mean, outputs.softmax(dim=-1).mean(dim=0), atol=1e-6)
    assert mean[1].argmax() == 2  # the confident view outweighs two mild ones
    regression = RegressionTask("r")
    values = torch.tensor([[[1.0]], [[5.0]], [[2.0]]])
    assert regression.combine_views(values, "vote").item() == 2.0  # the median
    assert regression.combine_views(values, "mean").item() == pytest.approx(8 / 3)


@pytest.mark.parametrize("method", ["ew", "upgrad", "pcgrad"])
def test_per_task_noise_trains_with_any_balancer(method):
    """Per-task draws give each task its own features, as multi-input data does: a gradient
    method gets each task's gradient from its own noisy copy."""
    model = _model(batch_norm=True)
    before = [p.detach().clone() for p in model.trunk.parameters()]
    trainer = Trainer(
        model,
        _tasks(),
        create(method, num_tasks=2),
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise=InputNoise(gaussian=0.2, per_task=True),
        progress=False,
    )
    split = _split(8)
    losses, _ = trainer.train_step(Batch(split.inputs, split.targets))
    assert torch.isfinite(losses).all()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.trunk.parameters()))


def _noisy_distilling_trainer() -> Trainer:
    model = _model(batch_norm=True)
    tasks = [
        ClassificationTask(name, 3, distill_alpha=0.5, distill_temperature=2.0) for name in "ab"
    ]
    return Trainer(
        model,
        tasks,
        create("ew", num_tasks=2),
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        noise=NOISE,
        seed=5,
        teachers=[EMATeacher(model, ["a", "b"], decay=0.5)],
        progress=False,
    )


@pytest.mark.slow
def test_a_resumed_run_with_noise_and_an_ema_teacher_is_bit_identical():
    """The noise generator and the averaged teacher are part of the training state."""
    split = _split(24)

    def batches(epoch: int) -> TensorBatches:
        loader = TensorBatches(split, 8, shuffle=True, seed=0)
        loader.set_epoch(epoch)
        return loader

    straight = _noisy_distilling_trainer()
    straight.fit(batches, 2)
    saved: list[dict] = []
    first = _noisy_distilling_trainer()
    first.fit(
        batches,
        1,
        checkpoint=lambda progress: saved.append(copy.deepcopy(first.state_dict(progress))),
    )
    resumed = _noisy_distilling_trainer()
    progress = resumed.load_state_dict(saved[-1])
    resumed.fit(batches, 2, progress=progress)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
