"""URLs as we may show them: without the credentials some users put in them (``http://user:key@host``)."""

from __future__ import annotations

import urllib.parse


def redact_url(url: str | None) -> str | None:
    """``url`` with any ``user:password@`` part replaced by ``***@``; other URLs unchanged."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))
