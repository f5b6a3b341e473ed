"""Task balancing: loss weightings and gradient aggregators behind one interface.

>>> from mtlkit.balancing import create
>>> bal = create("fixed", weights=[0.7, 0.3])
"""

from mtlkit.balancing.base import (
    BalanceInfo,
    Balancer,
    GradientAggregator,
    GramianWeighting,
    LossWeighting,
    Need,
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
