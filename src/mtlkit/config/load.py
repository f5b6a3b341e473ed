"""A config from a file: a run's (:func:`load_config`), or one derived from a trained run's
(:func:`derive_config`), with ``key=value`` overrides applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtlkit.config.experiment import ExperimentConfig, FinetuneConfig
from mtlkit.config.files import _anchor_table_paths, read_config_file
from mtlkit.config.model_sections import upgrade_saved_config
from mtlkit.config.overrides import set_override
from mtlkit.config.recipes import SECTION_IDENTITY
from mtlkit.config.resolve import _validated, parse_config


def derive_config(
    base: ExperimentConfig,
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
) -> tuple[ExperimentConfig, FinetuneConfig]:
    """A config that starts from ``base`` (a trained run's) and changes what the YAML file at
    ``path`` and the ``key=value`` ``overrides`` state, with its ``finetune:`` section apart.

    The file states only what differs (``train.epochs: 3``, ``optim.lr: 0.01``); a section whose
    identity it changes (``balancer.name``, ``data.benchmark``, …) is taken from the file alone.

    Raises:
        ConfigError: as :func:`load_config`, the ``finetune`` keys included.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_config_file(path)
        _anchor_table_paths(raw, Path(path).parent.absolute())
    for assignment in overrides:
        set_override(raw, assignment)
    plan = _validated(FinetuneConfig, raw.pop("finetune", None) or {}, ("finetune",))
    merged = base.to_dict()
    for section, value in raw.items():
        identity = SECTION_IDENTITY.get(section)  # a changed identity: the file's section alone
        if (
            isinstance(value, dict)
            and isinstance(merged.get(section), dict)
            and (
                identity is None
                or value.get(identity, merged[section].get(identity))
                == merged[section].get(identity)
            )
        ):
            merged[section] = {**merged[section], **value}
        else:
            merged[section] = value
    if isinstance(raw.get("model"), dict):
        merged["model"] = _merged_model(base.to_dict()["model"], raw["model"])
    return parse_config(merged), plan


def _merged_model(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` section of a derived config: the base's, with ``change``'s keys; the
    options of a backbone (architecture) the change keeps are merged key by key, those of one it
    replaces are dropped unless given."""
    merged = {**base, **change}
    for identity, options in (("backbone", "backbone_options"), ("sharing", "sharing_options")):
        kept = change.get(identity, base[identity]) == base[identity]
        given = change.get(options)
        if kept and isinstance(given, dict):
            merged[options] = {**base[options], **given}
        elif not kept and options not in change:
            merged[options] = {}
    return merged


def load_config(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, saved: bool = False
) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate the result.

    Table paths in the file (``data.table``, ``tasks.<name>.table``) are read from the file's
    folder, so that a config travels with its data; the resolved config holds them absolute.
    Paths given in ``overrides`` are read from the current folder. ``saved``: the file is a run
    folder's ``config.yaml``, which an older mtlkit may have written in a former layout
    (:func:`~mtlkit.config.model_sections.upgrade_saved_config`).
    """
    path = Path(path)
    raw = read_config_file(path)
    if saved:
        raw = upgrade_saved_config(raw)
    _anchor_table_paths(raw, path.parent.absolute())
    for assignment in overrides:
        set_override(raw, assignment)
    return parse_config(raw)
