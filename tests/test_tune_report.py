"""``tune``'s report: Optuna's optimization history of each method's search, and its parameter
importances when two or more parameters were searched, as real images in report.html."""

from __future__ import annotations

import base64
import html
import io
import re

import optuna
import pytest
from optuna.distributions import FloatDistribution
from PIL import Image

from mtlkit.config import parse_config
from mtlkit.evaluation.document import Figure
from mtlkit.workflows.tune import tune_methods
from mtlkit.workflows.tune_report import tuning_blocks
from mtlkit.workflows.tune_space import parse_param

HISTORY = "validation score per trial and the best so far"
IMPORTANCE = "parameter importances"
FIGURE = re.compile(
    r'<figure><img src="data:image/png;base64,([^"]*)" alt="[^"]*">'
    r"<figcaption>(.*?)</figcaption></figure>"
)


def _figures(page: str) -> dict[str, bytes]:
    """Per caption, the PNG of every figure of an HTML report."""
    return {
        html.unescape(caption): base64.b64decode(data) for data, caption in FIGURE.findall(page)
    }


def _study(parameters: int, trials: int) -> optuna.Study:
    """An in-memory study of ``trials`` complete trials over ``parameters`` float parameters,
    whose value depends on every parameter."""
    study = optuna.create_study(direction="maximize")
    names = [f"p{i}" for i in range(parameters)]
    for number in range(trials):
        params = {name: (number * (i + 2)) % 5 / 5 for i, name in enumerate(names)}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={name: FloatDistribution(0.0, 1.0) for name in names},
                value=sum((i + 1) * value for i, value in enumerate(params.values())),
            )
        )
    return study


@pytest.mark.parametrize(("parameters", "importance"), [(1, False), (2, True), (3, True)])
def test_importances_are_drawn_for_two_or_more_parameters(parameters, importance):
    blocks = tuning_blocks([], "One search.", {"ew": _study(parameters, 4)}, parameters)
    captions = [block.caption for block in blocks if isinstance(block, Figure)]
    assert [HISTORY in caption for caption in captions] == [True] + [False] * importance
    assert [IMPORTANCE in caption for caption in captions] == [False] + [True] * importance


@pytest.mark.slow
@pytest.mark.real_figures
@pytest.mark.usefixtures("one_torch_thread", "offline_data")
def test_a_two_parameter_tunes_report_shows_its_history_and_importances(tmp_path, tiny_config):
    space = [parse_param("optim.lr=0.3,0.01"), parse_param("optim.weight_decay=0,0.01")]
    config = parse_config(tiny_config())
    tune_methods(config, tmp_path / "tune", ["ew"], space, seeds=1, pruner="none")
    figures = _figures((tmp_path / "tune" / "report.html").read_text(encoding="utf-8"))
    optuna_figures = {
        caption: png
        for caption, png in figures.items()
        if HISTORY in caption or IMPORTANCE in caption
    }
    assert sorted(caption.split(":")[0] for caption in optuna_figures) == ["ew", "ew"]
    assert [IMPORTANCE in caption for caption in optuna_figures].count(True) == 1
    for caption, png in optuna_figures.items():
        image = Image.open(io.BytesIO(png))
        image.load()  # decodes the whole image: raises on a truncated or corrupt PNG
        assert image.format == "PNG" and min(image.size) >= 100, caption
        darkest, lightest = image.convert("L").getextrema()
        assert darkest < lightest, f"{caption}: a blank image"
