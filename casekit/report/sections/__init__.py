"""One module per template partial (templates/partials/<name>.html.j2): the section's view
dataclasses and the function that builds them from the findings and the run.

Partials without a module here take no section model: ``macros`` (Jinja macros only) and
``bibliography`` (a fixed list written by hand). tests/test_report_layout.py checks the mapping.
"""
