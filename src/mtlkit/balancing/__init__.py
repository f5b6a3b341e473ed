"""Task balancing: loss weightings and gradient aggregators behind one interface.

>>> from mtlkit.balancing import create
>>> bal = create("fixed", weights=[0.7, 0.3])
"""

from mtlkit.balancing.base import (
    Balancer,
    BalanceInfo,
    GradientAggregator,
    GramianWeighting,
    LossWeighting,
    Need,
)
from mtlkit.balancing.registry import MethodInfo, available, create, method_class, register

__all__ = [
    "Balancer",
    "BalanceInfo",
    "GradientAggregator",
    "GramianWeighting",
    "LossWeighting",
    "MethodInfo",
    "Need",
    "available",
    "create",
    "method_class",
    "register",
]
