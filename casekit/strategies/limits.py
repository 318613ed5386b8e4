"""The limits on a user-written prompt template (casekit.strategies.sandbox enforces them)."""

from __future__ import annotations

#: A rendered template, and any string or list a template builds, holds at most this many
#: characters or items (a prompt is a few thousand words).
TEMPLATE_MAX_CHARS = 1_000_000
#: Calls (filters aside) and ``range`` items one rendering may use: a template is a prompt, not
#: a program, and these bound its time whatever it is written to do.
TEMPLATE_MAX_STEPS = 100_000
