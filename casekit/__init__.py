"""casekit: court-ready evidence of whether a language model memorized a copyrighted work.

The pipeline is the layout: case -> plan -> run -> ledger -> analyze -> findings -> report.
"""

__version__ = "0.1.0"
