"""Render a report model: HTML with Jinja2, PDF with WeasyPrint.

Two walls keep hostile model output inert. First, every value reaches the HTML through Jinja's
autoescaping (``autoescape=True`` for every template, whatever its name); the templates never
mark anything safe. The only markup the model carries is the SVG figures of
:mod:`casekit.report.figures`, drawn from numbers and fixed sets and checked by
:func:`~casekit.report.figures.check_svg` before they are marked safe. Second, WeasyPrint
fetches only through :class:`SafeFetcher`, which serves files inside the template folders and
refuses everything else (``file://`` elsewhere, ``http``, ``data:``), logging each refusal at
WARNING.

Templates are looked up in the user's folder first (to override any partial), then in the
default folder: ``casekit/_templates`` inside an installed wheel, or the repository's top-level
``templates/`` in a checkout.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

import casekit
from casekit.errors import CasekitError
from casekit.visible import visible

log = logging.getLogger(__name__)

MAIN_TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"
#: File types the fetcher may serve from a template folder.
SERVED_SUFFIXES = frozenset({".css", ".ttf", ".otf", ".woff", ".woff2", ".png", ".jpg", ".jpeg",
                             ".svg"})


def default_template_dir() -> Path:
    """``casekit/_templates`` in an installed wheel, else the checkout's ``templates/``."""
    package = Path(casekit.__file__).resolve().parent
    shipped = package / "_templates"
    if shipped.is_dir():
        return shipped
    return package.parent / "templates"


def template_dirs(user_dir: Path | None = None) -> list[Path]:
    """Search path of the templates: the user's folder (overrides) first, then the default."""
    default = default_template_dir()
    if not (default / MAIN_TEMPLATE).is_file():
        raise CasekitError(f"report templates not found at {default}; reinstall casekit (the "
                           "wheel ships them as casekit/_templates)")
    dirs: list[Path] = []
    if user_dir is not None:
        if not user_dir.is_dir():
            raise CasekitError(f"{user_dir}: template folder not found; give a folder holding "
                               f"templates that override those in {default}")
        dirs.append(user_dir.resolve())
    dirs.append(default.resolve())
    return dirs


class FetchRefused(Exception):
    """WeasyPrint asked for a resource outside the template folders (skipped, never fatal)."""


try:  # WeasyPrint >= 70 expects a URLFetcher subclass; older versions take a plain callable.
    from weasyprint import URLFetcher as _FetcherBase
    from weasyprint.urls import URLFetcherResponse
except ImportError:  # pragma: no cover - weasyprint < 70
    _FetcherBase = object  # type: ignore[assignment,misc]
    URLFetcherResponse = None


class SafeFetcher(_FetcherBase):  # type: ignore[misc,valid-type]
    """Serves only files inside the given folders; refuses and logs everything else.

    ``served`` and ``refused`` list the URLs asked for, in order (for audit and tests).
    """

    def __init__(self, roots: Sequence[Path]) -> None:
        if _FetcherBase is not object:
            # No protocol is opened by the parent class: fetch() below never calls it.
            super().__init__(allowed_protocols=("file",), allow_redirects=False,
                             fail_on_errors=False)
        self.roots = [Path(r).resolve() for r in roots]
        self.served: list[str] = []
        self.refused: list[str] = []

    def local_path(self, url: str) -> Path | None:
        """The file a ``file:`` URL names, if it lies inside a root and may be served."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            return None
        try:
            path = Path(url2pathname(parts.path)).resolve()
        except (OSError, ValueError, RuntimeError):
            return None
        if path.suffix.lower() not in SERVED_SUFFIXES or not path.is_file():
            return None
        if not any(path.is_relative_to(root) for root in self.roots):
            return None
        return path

    def fetch(self, url: str, headers: Any = None) -> Any:
        path = self.local_path(url)
        if path is None:
            self.refused.append(url)
            log.warning("report: refused to fetch %r: only files inside the template folders "
                        "are served", url[:300])
            raise FetchRefused(f"refused: {url[:300]!r}")
        self.served.append(url)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path.as_uri(), body=path.read_bytes(),
                                  headers={"Content-Type": mime})

    def __call__(self, url: str) -> Any:
        return self.fetch(url)


def shown(value: Any) -> Any:
    """Every value a template prints (``finalize``): text shows its control, format and bidi
    characters by code point (``⟨U+202E⟩``), as outputs do (:func:`casekit.visible.visible`),
    so that no field from a model, a server or an import (returned model id, fingerprint,
    label, provenance...) can reorder, hide or inject text in the report. Markup (casekit's own
    segments, figures) passes as it is: its text went through the same function already."""
    if type(value) is str:
        return visible(value, keep="\t\n")
    return value


def make_environment(dirs: Sequence[Path]) -> Environment:
    """Jinja2 environment: autoescape on for every template, undefined names are errors, every
    printed value through :func:`shown`; the ``breakable`` filter for identifiers."""
    from casekit.report.text import breakable

    env = Environment(
        loader=FileSystemLoader([str(d) for d in dirs]),
        autoescape=True,
        finalize=shown,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    # Identifiers break only at safe points (a <wbr> after - / _ # :, hashes between groups).
    env.filters["breakable"] = breakable
    return env


def render_html(model: Any, template_dir: Path | None = None) -> str:
    """The report's HTML. The stylesheet is inlined so that report.html stands alone."""
    dirs = template_dirs(template_dir)
    env = make_environment(dirs)
    assert env.loader is not None
    css, _, _ = env.loader.get_source(env, STYLESHEET)
    template = env.get_template(MAIN_TEMPLATE)
    # The stylesheet is our own file (or the user's override), never data: mark it as markup.
    return template.render(r=model, stylesheet=Markup(css))


@contextlib.contextmanager
def _source_date_epoch(epoch: int | None) -> Iterator[None]:
    """Pin SOURCE_DATE_EPOCH while rendering (fontTools stamps subset fonts with it instead of
    the current time), unless the caller's environment already sets it."""
    if epoch is None or "SOURCE_DATE_EPOCH" in os.environ:
        yield
        return
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        os.environ.pop("SOURCE_DATE_EPOCH", None)


def render_pdf(html: str, target: Path, template_dir: Path | None = None,
               fetcher: SafeFetcher | None = None, source_date_epoch: int | None = None,
               **options: Any) -> SafeFetcher:
    """Write the PDF. ``options`` go to WeasyPrint's ``write_pdf`` (room for PDF/A-3 later).

    ``source_date_epoch`` (the run's start) replaces the current time inside embedded fonts,
    so the same HTML gives the same PDF bytes. Returns the fetcher used, whose
    ``served``/``refused`` lists record every fetch.
    """
    from weasyprint import HTML

    dirs = template_dirs(template_dir)
    if fetcher is None:
        fetcher = SafeFetcher(dirs)
    base_url = dirs[0].as_uri() + "/"
    with _source_date_epoch(source_date_epoch):
        HTML(string=html, base_url=base_url, url_fetcher=fetcher).write_pdf(target, **options)
    return fetcher
