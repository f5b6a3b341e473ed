"""The paper tables, reproduced with tuned methods and confidence intervals (issue 21).

    MTLKIT_DATA=/path/to/data python benchmarks/paper_tables.py [--table sener|fashion-mnist]
        [--methods ew,mgda-ub,...] [--workers 2] [--out runs/paper-tables]

One command per table; ``--methods`` runs a part of it (default: every row, in the table's
order). Table 1, ``sener``, is Sener & Koltun (2018), Table 3's protocol: MultiMNIST
(``protocol: sener``, the full training set less 10 % for validation), the LeNet trunk, rows
single-task, EW, MGDA-UB, UPGrad, Nash-MTL, FAMO and CAGrad. Table 2, ``fashion-mnist``, has
the same rows and protocol on ParetoMTL's Multi-(Fashion+MNIST) at its published size
(:data:`FASHION_MNIST_CONFIG`; the paper has no figure per method to set beside them). Every
row is ``mtlkit tune`` (:func:`~mtlkit.workflows.tune.tune_methods`) on one folder per table,
``<out>/<table>`` (``<out>/sener`` below):

* the learning rate is searched over :data:`LEARNING_RATES` (the same grid for every row,
  at seed 0, scored on validation) with the median pruner, on ``--workers`` processes of one
  intra-op thread each; the single-task baselines (each task alone) are searched first, once,
  by the first part that runs;
* a method with a main option of its own (CAGrad's ``c``, FAMO's logit decay ``gamma``) is
  searched at each of its values (:data:`SENER_VARIANTS`, each value a study over the learning
  rates) and the value with the best validation score is kept;
* the winner is retrained at seeds 0, 1, 2 and scored on test: mean ± 95 % CI per task and Δm%
  against the tuned single-task baselines, printed beside the paper's figures
  (:data:`SENER_PUBLISHED`: only those the paper reports).

A part is resumable: the engine's journal (``<out>/sener/study.journal``) and the finished run
folders (``<out>/sener/cells``) make a rerun with the same ``--out`` continue where it stopped,
from any checkout. Each part is recorded by ``benchmarks/ledger.py`` (:class:`ledger.PartLedger`):
its line in ``<out>/parts.jsonl`` has the command, start and end UTC, wall, CPU and stopped
seconds, the machine, the load average, the rows finished (``cells_finished``) and how it ended
(``status``: finished, interrupted by an error, SIGTERM or SIGHUP, or killed, recorded by the
next part from its heartbeat in ``<out>/parts/``), and in its ``notes`` the table, the rows
asked (``methods``), the workers and per finished row its chosen balancer, validation scores,
search trial-epochs and wall seconds. The table is printed from the finished rows, the others
marked, and written to ``<out>/<table>/results.md`` with every part's times.
``<out>/sener/protocol.json`` holds the protocol a folder was started with; another one (a
different ``--epochs``, ``--limit``, ``--seeds`` or ``--lrs``) is refused, so one folder never
mixes two.

Budget (measured on this machine, AMD EPYC, 2 cores, 1 intra-op thread, CPU seconds of the
process, so that the other jobs sharing the machine do not count): one LeNet epoch over the
54,000 training pairs, its validation and the final test pass, costs 8.0 s with EW and 10.3 s
with UPGrad (a method that needs each task's gradient); take 10 s. Table 1 has 10 studies (the
two single-task baselines, EW, MGDA-UB, UPGrad, Nash-MTL, FAMO at 2 values of γ, CAGrad at 2
values of c), each the 6 learning rates of :data:`LEARNING_RATES` at :data:`EPOCHS` = 40 epochs:
without pruning 10 × 6 × 40 = 2,400 trial-epochs; the median pruner (from the third trial of
a study on) stops a trial behind the median, typically 1 to 3 of the 4 it may judge, after
a few epochs, so about 1,700 to 2,100. The winners' two further seeds add 8 × 2 × 40 = 640
epochs. In all 2,340 to 3,040 epochs × 10 s ≈ 23,000 to 30,000 CPU seconds, i.e. 3.3 to 4.2
hours of the two cores (two workers of one thread each). The rows run in the order the issue
cares about (single-task and EW first: about 3 × 230 + 3 × 80 ≈ 930 epochs, 1.3 hours).

The smoke test (``tests/test_paper_tables.py``) runs a part on a tiny ``--limit``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ledger import PartLedger, read_parts, running_parts, utc_now
from timing import machine

from mtlkit.atomic import atomic_output
from mtlkit.config import ConfigError, ExperimentConfig, parse_config
from mtlkit.evaluation import MeanCI
from mtlkit.evaluation.document import markdown_table
from mtlkit.workflows.compare import MethodSpec, method_label, seed_list
from mtlkit.workflows.sweeps import SweepOptions
from mtlkit.workflows.tune import TuneResult, tune_methods
from mtlkit.workflows.tune_space import Param, parse_param

RESULTS = "results.md"
"""The table as measured so far (in the table's folder: several tables may share ``--out``)."""
PROTOCOL = "protocol.json"
"""What a table's folder was started with (a rerun must match it)."""

EPOCHS = 40
"""Epochs of every run of table 1 (search trials and the winners' seeds)."""
LEARNING_RATES = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005)
"""Table 1's learning-rate grid (SGD, momentum 0.9, cosine schedule), the same for every row."""
SEEDS = 3
"""Seeds the winner of every row is retrained at (0, 1, 2)."""
STALE_AFTER = 600.0
"""Seconds without a heartbeat before a running trial is taken over: longer than the engine's
default, so that a run paused (SIGSTOP) for a few minutes is not mistaken for a dead one."""

SENER_CONFIG: dict[str, Any] = {
    "name": "paper-sener",
    "seed": 0,
    "data": {"benchmark": "multi-mnist", "protocol": "sener", "val_fraction": 0.1},
    "model": {"backbone": "lenet", "head_hidden": 50},
    "balancer": {"name": "ew"},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
    "schedule": {"name": "cosine"},
    "train": {"epochs": EPOCHS, "batch_size": 256, "progress": False},
}
"""Table 1's experiment, every key that the benchmark's recipe would otherwise fill stated, so
that the cells (and so the studies) do not change when the recipe does."""
SENER_VARIANTS: dict[str, list[MethodSpec]] = {
    "ew": ["ew"],
    "mgda-ub": ["mgda-ub"],
    "upgrad": ["upgrad"],
    "nash-mtl": ["nash-mtl"],
    "famo": [{"name": "famo", "gamma": 0.01}, {"name": "famo", "gamma": 0.001}],
    "cagrad": [{"name": "cagrad", "c": 0.2}, {"name": "cagrad", "c": 0.5}],
}
"""Table 1's rows after the single-task baselines, in the order they run: the rows the issue
cares most about first. Each is searched at each of its balancer sections (its own main option:
FAMO's logit weight decay γ at the official default and the paper's value, CAGrad's c at the
value the paper uses on MultiMNIST-like benchmarks and a smaller one)."""
FASHION_MNIST_CONFIG: dict[str, Any] = {
    **SENER_CONFIG,
    "name": "paper-fashion-mnist",
    "data": {
        "benchmark": "multi-fashion-mnist",
        "protocol": "pareto-published",
        "val_fraction": 0.1,
    },
}
"""Table 2's experiment: table 1's, on ParetoMTL's Multi-(Fashion+MNIST) at its published size
(an MNIST digit over a Fashion-MNIST item, 36×36, 120,000 training images less 10 % for
validation, 20,000 test images; tasks ``left``, the digit, and ``right``, the item)."""
SENER_PUBLISHED: dict[str, tuple[float, float]] = {
    "single-task": (97.23, 95.90),
    "ew": (96.46, 94.99),
    "mgda-ub": (97.26, 95.90),
}
"""Sener & Koltun (2018), Table 3: left and right accuracy (%), for the rows it reports."""


@dataclass(frozen=True)
class PaperTable:
    """One table: its experiment, rows, search and the published figures beside it.

    Attributes:
        name: the ``--table`` name (also the folder under ``--out``).
        title: the table's heading.
        config: the experiment (raw), before ``--limit``/``--epochs``.
        variants: per row (a method), the balancer sections searched, in the rows' order.
        published: per row, the paper's figure for each task (%), where the paper has one.
        source: the paper the published figures come from.
    """

    name: str
    title: str
    config: Mapping[str, Any]
    variants: Mapping[str, Sequence[MethodSpec]]
    published: Mapping[str, tuple[float, ...]]
    source: str


TABLES = {
    "sener": PaperTable(
        name="sener",
        title="Table 1: MultiMNIST (Sener & Koltun 2018, Table 3 protocol), LeNet",
        config=SENER_CONFIG,
        variants=SENER_VARIANTS,
        published=SENER_PUBLISHED,
        source="Sener & Koltun (2018), Table 3",
    ),
    "fashion-mnist": PaperTable(
        name="fashion-mnist",
        title="Table 2: Multi-(Fashion+MNIST) (ParetoMTL protocol, published size), LeNet",
        config=FASHION_MNIST_CONFIG,
        variants=SENER_VARIANTS,
        published={},
        source="none per method (ParetoMTL, Lin et al. 2019, draws this benchmark's fronts "
        "only)",
    ),
}
"""The tables ``--table`` may name."""


@dataclass(frozen=True)
class Protocol:
    """What a run of a table is, beyond the table itself: the command line's sizes.

    Attributes:
        table: the table.
        epochs: epochs of every run.
        learning_rates: the searched grid.
        seeds: seeds the winners are retrained at.
        limit: training pairs (``data.limit``; None: the whole set).
    """

    table: PaperTable
    epochs: int
    learning_rates: tuple[float, ...]
    seeds: int
    limit: int | None

    def config(self) -> ExperimentConfig:
        """The experiment with these sizes (a config error exits 2 through ``main``)."""
        raw = json.loads(json.dumps(self.table.config))
        raw["train"]["epochs"] = self.epochs
        if self.limit is not None:
            raw["data"]["limit"] = self.limit
        return parse_config(raw)

    def params(self) -> list[Param]:
        """The searched parameters: the learning-rate grid."""
        return [parse_param("optim.lr=" + ",".join(f"{lr:g}" for lr in self.learning_rates))]

    def describe(self) -> dict[str, Any]:
        """Everything a folder's cells depend on, as JSON (kept in ``protocol.json``)."""
        return {
            "table": self.table.name,
            "config": self.config().to_dict(),
            "learning_rates": list(self.learning_rates),
            "seeds": self.seeds,
            "variants": {
                row: [method_label(v) for v in vs] for row, vs in self.table.variants.items()
            },
        }

    def summary(self) -> str:
        """One paragraph: how every row of the table was run."""
        config = self.config()
        seeds = ", ".join(map(str, seed_list(config, self.seeds)))
        return (
            f"{self.epochs} epochs of {config.optim.name} (momentum {config.optim.momentum:g}), "
            f"schedule {config.schedule.name}, batch {config.train.batch_size}; the learning "
            f"rate searched over {', '.join(f'{lr:g}' for lr in self.learning_rates)} on "
            f"validation at seed {config.seed} with the median pruner, the winner retrained at "
            f"seeds {seeds} and scored on test. Paper figures: {self.table.source}. Δm% vs tuned "
            "EW: above or below when the two 95 % intervals are disjoint."
        )

    def folder(self, out: Path) -> Path:
        """The table's tune folder under ``out``."""
        return out / self.table.name


def check_protocol(protocol: Protocol, out: Path) -> None:
    """Record ``protocol`` in a new folder, or check that it is the folder's.

    Raises:
        ConfigError: the folder was started with another protocol.
    """
    path = protocol.folder(out) / PROTOCOL
    wanted = protocol.describe()
    if path.is_file():
        changed = _differences(json.loads(path.read_text()), wanted)
        if changed:
            raise ConfigError(
                f"{path}: this folder was started with another protocol (it differs in "
                f"{', '.join(changed)}); rerun with the options it was started with (--epochs, "
                "--limit, --seeds, --lrs) or choose another --out (a changed default of mtlkit "
                "changes the runs too: their cells would not be reused)."
            )
        return
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(wanted, indent=2) + "\n")


def _differences(found: Any, wanted: Any, key: str = "") -> list[str]:
    """The dotted keys at which two JSON values differ."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        keys = sorted(set(found) | set(wanted))
        return [d for k in keys for d in _differences(found.get(k), wanted.get(k), f"{key}.{k}")]
    return [] if found == wanted else [key.lstrip(".")]


def tune_row(protocol: Protocol, out: Path, row: str, sweep: SweepOptions) -> dict[str, Any]:
    """Tune one row: each of its balancer sections over the learning rates, the section with the
    best validation score kept and retrained at every seed. Returns what ``parts.jsonl`` keeps
    of it: the balancer, its chosen value, the validation score of each section searched and
    the trial-epochs the searches ran."""
    variants = list(protocol.table.variants[row])
    config, params, folder = protocol.config(), protocol.params(), protocol.folder(out)
    labels = [method_label(variant) for variant in variants]

    def tune(specs: list[MethodSpec], seeds: int) -> TuneResult:
        return tune_methods(config, folder, specs, params, seeds=seeds, sweep=sweep)

    # One seed first when there are several sections: only the best is retrained at the others.
    search = tune(variants, 1 if len(variants) > 1 else protocol.seeds)
    studies = {s.subject: s for s in search.studies if s.subject in labels}
    best = max(labels, key=lambda label: studies[label].val_score)  # ties: the first listed
    if len(variants) > 1:
        tune([variants[labels.index(best)]], protocol.seeds)
    return {
        "balancer": variants[labels.index(best)],
        "chosen": studies[best].chosen_label,
        "val_scores": {label: studies[label].val_score for label in labels},
        "search_trial_epochs": sum(study.counts.trial_epochs for study in studies.values()),
    }


def _stop_on_signal(number: int, frame: Any) -> None:
    """SIGTERM or SIGHUP: leave through the ledger's ``with`` block, so the part's line is
    written."""
    raise SystemExit(128 + number)


def run_part(
    protocol: Protocol, out: Path, rows: Sequence[str], sweep: SweepOptions, command: Sequence[str]
) -> None:
    """Tune ``rows`` in order, as a part of ``out`` recorded by :class:`ledger.PartLedger`
    (``command``: the command line that ran it). The part's ``notes`` say its table, the rows
    asked (``methods``), the workers and, per finished row, what :func:`tune_row` kept of it
    and the row's wall seconds (``wall_s``); the ledger's ``cells_finished`` names the rows
    finished and its ``status`` how the part ended (also on an error, SIGTERM or SIGHUP)."""
    kept: dict[str, dict[str, Any]] = {}
    with PartLedger(out, command=command) as ledger:
        ledger.note(table=protocol.table.name, methods=list(rows), workers=sweep.workers, rows={})
        for row in rows:
            start = time.perf_counter()
            print(f"[{utc_now()}] {protocol.table.name}: {row}", flush=True)
            kept[row] = tune_row(protocol, out, row, sweep)
            kept[row]["wall_s"] = round(time.perf_counter() - start, 1)
            ledger.note(rows=kept)
            ledger.finished(row)


def table_parts(out: Path, table: str) -> list[dict[str, Any]]:
    """The parts of ``out`` that ran ``table``: those ended (:func:`ledger.read_parts`, oldest
    first), then those running (their last heartbeat). A line without the ``notes`` of
    :func:`run_part` (written before the parts were kept by the ledger) is left out: rerun its
    rows, which trains nothing for a finished one, to record them."""
    parts = read_parts(out) + running_parts(out)
    return [part for part in parts if part.get("notes", {}).get("table") == table]


def finished_rows(parts: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per row that some part finished, what the first such part kept of it (a later part that
    finds it finished trains nothing for it)."""
    rows: dict[str, dict[str, Any]] = {}
    for part in parts:
        for row, kept in part["notes"]["rows"].items():
            rows.setdefault(row, kept)
    return rows


def _percent(value: MeanCI) -> str:
    """An accuracy (a fraction) as ``97.23 ± 0.12`` (%)."""
    return MeanCI(100 * value.mean, 100 * value.half_width, value.n).format(2)


def _against(row: MeanCI, reference: MeanCI) -> str:
    """``above``/``below`` when the two intervals are disjoint, else ``within the CIs``."""
    if row.low > reference.high:
        return "above"
    if row.high < reference.low:
        return "below"
    return "within the CIs"


def _reproduces(ours: Mapping[str, MeanCI], paper: Sequence[float]) -> str:
    """Whether each published figure lies in our interval, per task."""
    return ", ".join(
        "yes" if value.low <= published / 100 <= value.high else "no"
        for value, published in zip(ours.values(), paper)
    )


def _finished_comparison(
    protocol: Protocol, out: Path, sweep: SweepOptions, done: Mapping[str, Mapping[str, Any]]
) -> TuneResult | None:
    """``tune``'s comparison of the finished rows' winners (it trains nothing: their studies and
    cells are complete; run on one worker with ``sweep``'s other options), None if none."""
    rows = [row for row in protocol.table.variants if row in done]
    if not rows:
        return None
    return tune_methods(
        protocol.config(),
        protocol.folder(out),
        [done[row]["balancer"] for row in rows],
        protocol.params(),
        seeds=protocol.seeds,
        sweep=replace(sweep, workers=1),
    )


def summary_table(protocol: Protocol, out: Path, sweep: SweepOptions) -> list[str]:
    """The table's markdown lines from the finished rows, the unfinished rows marked."""
    table = protocol.table
    tasks = protocol.config().task_names
    done = finished_rows(table_parts(out, table.name))
    result = _finished_comparison(protocol, out, sweep, done)
    header = [
        "row",
        "balancer",
        "chosen",
        *(f"{task} acc. % (± 95 % CI)" for task in tasks),
        "Δm% (± 95 % CI)",
        "Δm% vs tuned EW",
        *(f"paper {task}" for task in tasks),
        "paper's figure in our CI",
        "search trial-epochs",
        "wall s (row)",
    ]

    def paper(row: str, ours: Mapping[str, MeanCI] | None) -> list[str]:
        figures = table.published.get(row)
        if figures is None:
            return ["—"] * (len(tasks) + 1)
        found = "—" if ours is None else _reproduces(ours, figures)
        return [*(f"{value:.2f}" for value in figures), found]

    def unfinished(row: str) -> list[str]:
        return [row, "—", "not finished", *["—"] * (len(tasks) + 2), *paper(row, None), "—", "—"]

    if result is None:
        body = [unfinished(row) for row in ("single-task", *table.variants)]
        return [f"## {table.title}", "", markdown_table(header, body, 3)]
    base = result.comparison.baselines
    ours = {task: base[task].test for task in tasks}
    studies = {study.subject: study for study in result.studies}
    body = [
        [
            "single-task",
            "ew (each task alone)",
            "; ".join(f"{task}: {base[task].chosen}" for task in tasks),
            *(_percent(ours[task]) for task in tasks),
            "0 (reference)",
            "—",
            *paper("single-task", ours),
            str(sum(studies[f"single-task {task}"].counts.trial_epochs for task in tasks)),
            "—",
        ]
    ]
    measured = {row.method: row for row in result.comparison.rows}
    ew = measured[method_label(done["ew"]["balancer"])] if "ew" in done else None
    for row in table.variants:
        if row not in done:
            body.append(unfinished(row))
            continue
        kept = done[row]
        label = method_label(kept["balancer"])
        found = measured[label]
        body.append(
            [
                row,
                label,
                found.chosen,
                *(_percent(found.test[task]) for task in tasks),
                found.delta_m.format(2),
                "—" if ew is None or row == "ew" else _against(found.delta_m, ew.delta_m),
                *paper(row, found.test),
                str(kept["search_trial_epochs"]),
                str(kept["wall_s"]),
            ]
        )
    return [f"## {table.title}", "", markdown_table(header, body, 3)]


def parts_table(parts: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: each part's rows, command, times, load, the rows it finished and how it
    ended (the ledger's status: finished, interrupted, killed or running)."""
    header = [
        "part (methods)",
        "command",
        "start UTC",
        "end UTC",
        "wall s",
        "stopped s",
        "load avg",
        "rows finished",
        "status",
    ]
    body = [
        [
            ", ".join(part["notes"]["methods"]),
            f"`{shlex.join(part['command'])}`",
            part["start"],
            part["end"],
            str(part["wall_seconds"]),
            str(part["paused_seconds"]),
            f"{part['load_start'][0]:.1f} → {part['load_end'][0]:.1f}",
            ", ".join(part["cells_finished"]) or "—",
            part["status"],
        ]
        for part in parts
    ]
    return markdown_table(header, body, 4)


def write_results(protocol: Protocol, out: Path, sweep: SweepOptions) -> str:
    """The table, how it was made and each part's times, as markdown, into
    ``<out>/<table>/results.md``."""
    parts = table_parts(out, protocol.table.name)
    machines = sorted({part["machine"]["line"].split(";")[0] for part in parts})
    lines = [
        *summary_table(protocol, out, sweep),
        "",
        protocol.summary(),
        "",
        parts_table(parts),
        "",
        *(f"Machine: {name}" for name in machines),
    ]
    text = "\n".join(lines) + "\n"
    with atomic_output(protocol.folder(out) / RESULTS) as temporary:
        temporary.write_text(text)
    return text


def parse_rows(text: str | None, table: PaperTable) -> list[str]:
    """``--methods``: the named rows in the table's order (default: every row).

    Raises:
        ConfigError: a name that is not a row of the table.
    """
    if text is None:
        return list(table.variants)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in table.variants]
    if unknown or not names:
        raise ConfigError(
            f"--methods {text!r}: name rows of table {table.name}, comma-separated, from "
            f"{', '.join(table.variants)} (the single-task baselines run with the first part)."
        )
    return [row for row in table.variants if row in names]


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (``--help`` shows it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", choices=sorted(TABLES), default="sener")
    parser.add_argument("--methods", help="the rows of this part, e.g. ew,mgda-ub (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/paper-tables"))
    parser.add_argument("--workers", type=int, default=2, help="trials at once, one thread each")
    parser.add_argument("--report", action="store_true", help="only print the finished rows")
    parser.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER,
        help="seconds without a heartbeat before a running trial is taken over (lower it when "
        "restarting a part whose processes you stopped yourself)",
    )
    sizes = parser.add_argument_group("sizes (a folder keeps the ones it was started with)")
    sizes.add_argument("--epochs", type=int, default=EPOCHS)
    sizes.add_argument("--seeds", type=int, default=SEEDS)
    sizes.add_argument("--limit", type=int, default=None, help="training pairs (smoke runs)")
    sizes.add_argument(
        "--lrs",
        type=lambda text: tuple(float(value) for value in text.split(",")),
        default=LEARNING_RATES,
        help="the learning-rate grid, comma-separated",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a part of a table (or only report it) and print the table; the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_arguments(argv)
    table = TABLES[args.table]
    try:
        protocol = Protocol(table, args.epochs, args.lrs, args.seeds, args.limit)
        rows = parse_rows(args.methods, table)
        sweep = SweepOptions(workers=args.workers, threads=1, stale_after=args.stale_after)
        check_protocol(protocol, args.out)
    except ConfigError as error:
        print(f"paper_tables: config error: {error}", file=sys.stderr)
        return 2
    if not args.report:
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, _stop_on_signal)
        print(machine(), flush=True)
        run_part(protocol, args.out, rows, sweep, ["python", "benchmarks/paper_tables.py", *argv])
    print(write_results(protocol, args.out, sweep), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
