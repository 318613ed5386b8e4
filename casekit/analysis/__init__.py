"""Analysis: normalization profiles, the k-gram index and span matcher, the prompt-leakage
discount, metrics, taxonomy and statistics (measurement.md sections 1-4).

Everything here works from recorded text only; nothing in this package calls a model.
"""
