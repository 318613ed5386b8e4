"""Everything that records: the runner, batches, multi-turn sessions, rate limits, re-runs and
imports. Below analysis and report, above planning and providers."""
