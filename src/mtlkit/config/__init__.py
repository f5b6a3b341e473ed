"""The experiment configuration: a YAML file, validated once, before any work starts.

Every field has a default, so a config file only states what differs. Unknown keys, wrong types,
out-of-range values, names that no registry knows and tasks that the data lacks are refused with
one line naming the key and what is allowed (:class:`ConfigError`); the validated config is
*resolved*, every default filled in, so the ``config.yaml`` a run writes reproduces it.

Where each part lives:

- ``errors``: :class:`ConfigError`.
- ``section``: the base of every section (strict types, finite numbers, no unknown keys).
- ``data_sections``: the ``data`` and ``tasks`` sections (a benchmark, a table, a table per
  task; the loss techniques).
- ``model_sections``: the ``model`` section (trunk, heads, sharing architecture, each
  architecture's and backbone's options checked against its signature).
- ``training_sections``: ``balancer``, ``optim``, ``schedule``, ``train``, ``regularization``,
  ``noise``, ``eval``.
- ``experiment``: :class:`ExperimentConfig` (every section, the head ensembles) and
  :class:`FinetuneConfig` (the ``finetune:`` plan).
- ``resolve``: :func:`parse_config`, the cross-checks between sections and the filled-in
  defaults.
- ``overrides``: :func:`set_override`, :func:`set_value`, :func:`config_difference`,
  :func:`balancer_options`.
- ``files``: reading a YAML file within the safety bounds (size, depth, alias expansion).
- ``load``: :func:`load_config` and :func:`derive_config` (a config from a trained run's).
"""

from mtlkit.config.errors import ConfigError
from mtlkit.config.experiment import ExperimentConfig, FinetuneConfig
from mtlkit.config.load import derive_config, load_config
from mtlkit.config.model_sections import upgrade_saved_config
from mtlkit.config.overrides import balancer_options, config_difference, set_override, set_value
from mtlkit.config.resolve import parse_config

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "FinetuneConfig",
    "balancer_options",
    "config_difference",
    "derive_config",
    "load_config",
    "parse_config",
    "set_override",
    "set_value",
    "upgrade_saved_config",
]
