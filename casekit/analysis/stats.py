"""Moved to :mod:`casekit.stats` (below strategies, which own the measures that use it);
kept so existing imports work. To remove when the report imports casekit.stats."""

from casekit.stats import (  # noqa: F401
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    Z95,
    BootstrapRate,
    Rate,
    bootstrap_rate,
    clopper_pearson,
    clopper_pearson_upper,
    clustered_rate,
    rate,
    wilson,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "BootstrapRate",
    "Rate",
    "Z95",
    "bootstrap_rate",
    "clopper_pearson",
    "clopper_pearson_upper",
    "clustered_rate",
    "rate",
    "wilson",
]
