"""optuna-dashboard on a grid's storage: the dashboard's own WSGI application, opened as its
command line opens it (``optuna-dashboard <out>/study.journal``, ``optuna-dashboard
postgresql://…``) and called in-process, lists the grid's study and each trial with its cell."""

from __future__ import annotations

import json
import wsgiref.util
from typing import Any

import optuna
import pytest

from mtlkit.config import parse_config
from mtlkit.workflows.cells import CELLS
from mtlkit.workflows.compare import compare_methods
from mtlkit.workflows.sweeps import JOURNAL, SweepOptions, open_storage

optuna_dashboard = pytest.importorskip(
    "optuna_dashboard", reason="optuna-dashboard is in the dev extra: pip install -e '.[dev]'"
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "offline_data")


def _get_json(app: Any, path: str) -> Any:
    """The JSON body of ``GET path`` answered by the WSGI application ``app``."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    statuses: list[str] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    assert statuses == ["200 OK"], (path, statuses, body[:200])
    return json.loads(body)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_the_dashboard_lists_a_grids_study_and_its_cells(tmp_path, tiny_config, request, backend):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    folder = tmp_path / "cmp"
    compare_methods(
        parse_config(tiny_config()), folder, ["ew"], seeds=1, sweep=SweepOptions(storage=url)
    )
    (summary,) = optuna.get_all_study_summaries(open_storage(folder, url))
    cell_labels = sorted(cell.name.rsplit("-", 1)[0] for cell in (folder / CELLS).iterdir())

    app = optuna_dashboard.wsgi(url or str(folder / JOURNAL))
    (study,) = _get_json(app, "/api/studies")["study_summaries"]
    assert study["study_name"] == summary.study_name and summary.study_name.startswith("compare-")
    trials = _get_json(app, f"/api/studies/{study['study_id']}")["trials"]
    assert [trial["state"] for trial in trials] == ["Complete"] * len(cell_labels)
    cells = [
        attr["value"] for trial in trials for attr in trial["user_attrs"] if attr["key"] == "cell"
    ]
    assert sorted(cells) == cell_labels == ["ew-seed0", "single-left-seed0", "single-right-seed0"]
