"""The one trainer builder of the workflows: the config's every training key reaches the trainer
(validation scores over ``eval.views`` as the test evaluation does)."""

from __future__ import annotations

import json

import pytest
import torch

from mtlkit.config import parse_config
from mtlkit.training import evaluate
from mtlkit.workflows import train
from mtlkit.workflows.build import build_tasks, build_views, eval_batches, load_data
from mtlkit.workflows.restore import restore_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_validation_scores_over_the_configured_views(tmp_path, offline_data, tiny_config):
    """The epoch's validation metrics are those of the views the test evaluation uses, not of
    the inputs as they are (which differ: the views are noisy)."""
    config = parse_config(
        tiny_config(
            model={"backbone_options": {"hidden": [16]}},
            data={"val_fraction": 0.3},
            noise={"gaussian": 1.5},
            eval={"views": 3, "combine": "mean"},
        )
    )
    result = train(config, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"][0]["val"]
    run = restore_run(tmp_path / "run")
    data = load_data(config)
    tasks = build_tasks(config, data.tasks)
    device = torch.device("cpu")

    def summaries(views) -> dict:
        batches = eval_batches(config, data.val)
        reports = evaluate(run.model, tasks, batches, device, run.memory_format, views)
        return {name: report.summary() for name, report in reports.items()}

    assert result.best_epoch == 1
    assert recorded == summaries(build_views(config))  # the same computation, exactly
    assert recorded != summaries(None)
