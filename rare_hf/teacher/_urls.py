"""URLs as we may show them: without the credentials some users put in them (``http://user:key@host``)."""

from __future__ import annotations

import base64
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


def split_credentials(url: str) -> tuple[str, str | None]:
    """``(url without user:password@, a Basic Authorization header value or None)``, as ``requests`` and
    ``httpx`` treat credentials in a URL (aiohttp refuses them next to a bearer token)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    userinfo = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    host = parts.netloc.rsplit("@", 1)[1]
    token = base64.b64encode(userinfo.encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), f"Basic {token}"
