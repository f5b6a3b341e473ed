"""Task balancing: loss weightings and gradient aggregators behind one interface.

>>> from mtlkit.balancing import create
>>> bal = create("fixed", weights=[0.7, 0.3])

Layout, one concern per module: :mod:`~mtlkit.balancing.types` (small shared types),
:mod:`~mtlkit.balancing.base` (the balancer classes), :mod:`~mtlkit.balancing.engine` (per-task
gradients and ``.grad``), :mod:`~mtlkit.balancing.solvers` (the small optimisation problems),
:mod:`~mtlkit.balancing.options` (option validators), :mod:`~mtlkit.balancing.registry` (methods
by name) and :mod:`~mtlkit.balancing.methods` (one module per method family).
"""

from mtlkit.balancing.base import (
    Balancer,
    GradientAggregator,
    GramianWeighting,
    LossWeighting,
)
from mtlkit.balancing.engine import Engine

# Importing the method modules registers every method (their classes are decorated with
# ``@register``), so that ``create`` knows them all after ``import mtlkit.balancing``.
from mtlkit.balancing.methods import (  # noqa: F401
    aligned_mtl,
    cagrad,
    config_method,
    cosmos,
    cr_mogm,
    db_mtl,
    dwa,
    excess_mtl,
    fairgrad,
    famo,
    fixed,
    geometric,
    graddrop,
    gradnorm,
    gradvac,
    imtl,
    imtl_g,
    krum,
    mgda,
    moco,
    modo,
    nash_mtl,
    pbi,
    pcd,
    pcgrad,
    random_weights,
    sdmgrad,
    stch,
    trimmed_mean,
    uncertainty,
    upgrad,
)
from mtlkit.balancing.registry import (
    MethodInfo,
    available,
    create,
    describe,
    method_class,
    register,
)
from mtlkit.balancing.types import BalanceInfo, Need

__all__ = [
    "Balancer",
    "BalanceInfo",
    "Engine",
    "GradientAggregator",
    "GramianWeighting",
    "LossWeighting",
    "MethodInfo",
    "Need",
    "available",
    "create",
    "describe",
    "method_class",
    "register",
]
