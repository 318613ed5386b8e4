"""The report's code mirrors its templates, and its words are in one place.

- Every module (or package) in casekit/report/sections/ is named after a partial in
  templates/partials/, and every partial that reads the report model has its module; a
  package's modules each serve a block of the partial of the package's name.
- No file in casekit/ is longer than 800 lines.
- Sentences the report prints are in casekit/report/catalogue.py (or the templates), not in
  string literals of the builders.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "casekit"
SECTIONS = PACKAGE / "report" / "sections"
PARTIALS = REPO / "templates" / "partials"
MAX_LINES = 800

#: Partials with no module in sections/, and why. Each must read nothing from the model ``r``
#: (checked below): a partial that does needs a module.
NO_MODULE = {
    "macros": "Jinja macros only (segs, kvtable); it shows no section",
    "bibliography": "a fixed list of references written by hand; casekit generates no citation",
}
#: The words of a literal that make it a sentence of the report rather than a key or a unit.
SENTENCE_WORDS = 4


def _section_names(root: Path = SECTIONS) -> set[str]:
    names = {p.stem for p in root.glob("*.py") if p.name != "__init__.py"}
    names |= {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    return names


def _partial_names() -> set[str]:
    return {p.name.removesuffix(".html.j2") for p in PARTIALS.glob("*.html.j2")}


def test_every_section_module_has_its_partial() -> None:
    missing = sorted(_section_names() - _partial_names())
    assert not missing, (f"casekit/report/sections/ has {missing} with no partial of the same "
                         "name in templates/partials/: name the module after the partial it "
                         "builds the view of")


def test_every_partial_that_reads_the_model_has_its_module() -> None:
    missing = sorted(_partial_names() - _section_names() - set(NO_MODULE))
    assert not missing, (f"templates/partials/ has {missing} with no module in "
                         "casekit/report/sections/: add one that builds its view, or list it "
                         "in NO_MODULE with why")


@pytest.mark.parametrize("name", sorted(NO_MODULE))
def test_a_partial_without_a_module_reads_no_model(name: str) -> None:
    text = (PARTIALS / f"{name}.html.j2").read_text(encoding="utf-8")
    assert not re.search(r"\br\.\w", text), (f"partials/{name}.html.j2 reads the report model; "
                                             "give it a module in casekit/report/sections/")


def test_the_exceptions_are_stated_in_the_sections_docstring() -> None:
    doc = ast.get_docstring(ast.parse((SECTIONS / "__init__.py").read_text())) or ""
    assert all(f"``{name}``" in doc for name in NO_MODULE), doc


def test_a_section_package_serves_one_partial() -> None:
    """Modules inside a section package say which partial's block they build."""
    for pkg in (p for p in SECTIONS.iterdir() if (p / "__init__.py").is_file()):
        for mod in pkg.glob("*.py"):
            doc = ast.get_docstring(ast.parse(mod.read_text())) or ""
            assert f"partials/{pkg.name}.html.j2" in doc, (
                f"{mod.relative_to(REPO)}: its docstring should name the block of "
                f"partials/{pkg.name}.html.j2 it builds")


def test_the_mapping_check_sees_a_stray_module(tmp_path: Path) -> None:
    """Not vacuous: a module or package named after no partial is reported."""
    for name in ("__init__.py", "cover.py", "appendix_z.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "further").mkdir()
    (tmp_path / "further" / "__init__.py").write_text("")
    assert _section_names(tmp_path) == {"cover", "appendix_z", "further"}
    assert _section_names(tmp_path) - _partial_names() == {"appendix_z"}


def test_no_file_in_the_package_exceeds_the_limit() -> None:
    long = {str(p.relative_to(REPO)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by what they serve): {long}"


def _sentences(path: Path) -> list[str]:
    """String literals of at least SENTENCE_WORDS words (text of f-strings included) that are
    not docstrings, error messages (raised) or log messages."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for st in body:  # docstrings of modules, classes, functions and attributes
                if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
                    skip.add(id(st.value))
        if isinstance(node, ast.Raise) or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "log"):
            skip |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            skip |= {id(v) for v in node.values}
            text = " ".join(v.value for v in node.values
                            if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if len(text.split()) >= SENTENCE_WORDS:
            found.append(f"{path}:{node.lineno}: {text[:70]!r}")
    return found


def _builders() -> list[Path]:
    report = PACKAGE / "report"
    return [report / "build.py", report / "text.py", report / "views.py", report / "model.py",
            *sorted(SECTIONS.rglob("*.py"))]


def test_the_report_sentences_are_in_the_catalogue() -> None:
    found = [s for p in _builders() for s in _sentences(p)]
    assert not found, ("sentences of the report outside casekit/report/catalogue.py (move them "
                       "there as str.format templates, or into the partial):\n"
                       + "\n".join(found))


def test_the_sentence_check_sees_a_sentence(tmp_path: Path) -> None:
    """Not vacuous: an f-string sentence in a builder is found; a docstring, an error message
    and a log message are not."""
    mod = tmp_path / "probe.py"
    mod.write_text('"""A docstring of many words here."""\nimport logging\n'
                   'log = logging.getLogger(__name__)\n'
                   'def f(n: int) -> str:\n'
                   '    """Another docstring of many words."""\n'
                   '    log.info("a log message of many words %s", n)\n'
                   '    if n < 0:\n'
                   '        raise ValueError(f"an error message of {n} words")\n'
                   '    return f"{n} attempts reached the reporting threshold"\n')
    found = _sentences(mod)
    assert len(found) == 1 and "reached the reporting threshold" in found[0], found
