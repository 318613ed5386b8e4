"""Strategies: one module per strategy; ``base`` holds the interface and the registry."""

from casekit.strategies.base import Probe, Strategy, strategy_class, strategy_names

__all__ = ["Probe", "Strategy", "strategy_class", "strategy_names"]
