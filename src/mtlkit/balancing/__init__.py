"""Task balancing: loss weightings and gradient aggregators behind one interface.

>>> from mtlkit.balancing import create
>>> bal = create("fixed", weights=[0.7, 0.3])
"""

from mtlkit.balancing.base import (
    Balancer,
    GradientAggregator,
    GramianWeighting,
    LossWeighting,
)
from mtlkit.balancing.engine import Engine
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
