"""The one check of a URL a case or the command line gives casekit (a model server, a
timestamp authority): plain http(s), a host, no credentials. Low in the pipeline so that the
case file and the ledger's anchor share it."""

from __future__ import annotations

import urllib.parse

from casekit.visible import visible


def check_base_url(url: str, *, what: str = "the server's address",
                   example: str = "e.g. http://127.0.0.1:8000/v1",
                   credentials: str = "put the key in the environment variable named by "
                                      "api_key_env") -> None:
    """Refuse an endpoint that is not plain http(s) or that carries credentials (a password in
    a URL would be recorded in run_start and printed in the report). The message never repeats
    the URL (it may hold a secret)."""
    example = f"{what}, {example}"
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"must not contain spaces or control characters; write {example}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"is not a valid URL; write {example}") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = visible(parts.scheme[:20]) if parts.scheme else "none"
        raise ValueError(f"must be an http:// or https:// URL (scheme here: {scheme}); write "
                         f"{example}")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise ValueError("must not hold a user name or password (they would be recorded "
                         f"with the URL); remove them and {credentials}")
    if not parts.hostname:
        raise ValueError(f"names no host; write {example}")
