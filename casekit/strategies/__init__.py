"""Strategies: one module per strategy (its plan and the measures it contributes); ``base``
holds the interface and the registry, ``measures`` the measure interface."""

from casekit.strategies.base import (
    Probe,
    Strategy,
    register_strategy,
    strategy_class,
    strategy_names,
)
from casekit.strategies.measures import Measure, MeasureFields

__all__ = ["Measure", "MeasureFields", "Probe", "Strategy", "register_strategy", "strategy_class",
           "strategy_names"]
