"""Storage URLs without their passwords: the one place a URL is turned into text for a message or a file.

A storage URL such as ``postgresql://user:secret@host/db`` carries a password, and so may a query
parameter (``?password=secret``). :func:`redact` renders any URL with every password replaced by ``***``;
:func:`scrub` removes the passwords of known URLs from any other text (an exception message from a database
driver, say). The URL can come from the environment variable ``MOMSEARCH_STORAGE`` instead of the command
line, where other users of the machine could read it in the process list (:func:`storage_from_env`).
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

ENV_STORAGE = "MOMSEARCH_STORAGE"
HIDDEN = "***"
# user:password@ after the scheme, and password=... (or passwd=, pwd=) in a query string
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#\s]*):(?P<secret>\S*)@")
_QUERY = re.compile(r"""(?P<head>[?&;](?:password|passwd|pwd)=)(?P<secret>[^&;#\s'"]*)""", re.IGNORECASE)


def storage_from_env(given: str | None) -> str | None:
    """``given`` (a ``--storage`` flag), else the value of ``MOMSEARCH_STORAGE`` if set and not empty."""
    if given:
        return given
    return os.environ.get(ENV_STORAGE) or None


def redact(url: object) -> str:
    """``url`` as text with its password(s) replaced by ``***``.

    Parsed with SQLAlchemy's ``make_url(url).render_as_string(hide_password=True)`` where it parses
    (the driver need not be installed), then any ``password=`` query parameter is hidden too. A URL that
    does not parse is redacted by pattern: ``scheme://user:***@host`` and ``password=***``.
    """
    text = str(url)
    try:
        from sqlalchemy.engine import make_url

        rendered = make_url(text).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparsable value is redacted by pattern below
        rendered = text
    rendered = _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", rendered)
    return _QUERY.sub(lambda m: f"{m['head']}{HIDDEN}", rendered)


def secrets(url: object) -> list[str]:
    """The passwords in ``url`` as they may appear in text (raw and percent-decoded), longest first."""
    text = str(url)
    found = [m["secret"] for m in _USERINFO.finditer(text)] + [m["secret"] for m in _QUERY.finditer(text)]
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(text)
        if parsed.password:
            found.append(str(parsed.password))
        for key, value in parsed.query.items():
            if key.lower() in ("password", "passwd", "pwd"):
                found += [value] if isinstance(value, str) else list(value)
    except Exception:  # noqa: BLE001 - the patterns above already found what an unparsable URL holds
        pass
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s and s != HIDDEN}, key=len, reverse=True)


def scrub(text: str, *urls: object) -> str:
    """``text`` with every known URL redacted and each of their passwords replaced by ``***``.

    Args:
        text: any message (an exception's text, a line for the user).
        urls: storage URLs whose passwords must not appear (None entries are skipped).
    """
    for url in urls:
        if not url:
            continue
        text = text.replace(str(url), redact(url))
        for secret in secrets(url):
            text = text.replace(secret, HIDDEN)
    return _QUERY.sub(lambda m: f"{m['head']}{HIDDEN}", _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", text))
