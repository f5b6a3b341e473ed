"""mtlkit: multi-task learning on PyTorch.

One network learns several tasks at once: a shared trunk with task heads, per-task losses balanced
by a weighting or gradient-aggregation method, every task evaluated on its own.
"""

__version__ = "0.1.0"
