"""Who may use the control API: anyone on this host when bound to loopback, bearer-token
holders otherwise.

A service bound to another interface without a configured token gets one generated on
first start and kept next to its job database (mode 0600), so it survives restarts and the
operator reads it once from the start-up output. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
from pathlib import Path

from ..errors import ConfigError

__all__ = ["is_loopback", "service_token", "token_matches", "TOKEN_COOKIE", "MAX_TOKEN_CHARS"]

log = logging.getLogger(__name__)

#: the dashboard's image requests cannot send headers; they carry the token in this cookie
TOKEN_COOKIE = "streammat_token"
MAX_TOKEN_CHARS = 256


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name from ``http: HOST:PORT``) is this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or a wildcard that resolves elsewhere: treat as exposed


def service_token(configured: str | None, *, host: str, state_path: str | os.PathLike[str]) -> tuple[str | None, bool]:
    """The token the API requires (None: no token needed) and whether it was just generated.

    Loopback binds need none unless one is configured; other binds use the configured token
    or the one kept in ``STATE.token`` (generated there on first start)."""
    if configured is not None:
        if not 16 <= len(configured) <= MAX_TOKEN_CHARS:
            raise ConfigError(f"token: expected 16 to {MAX_TOKEN_CHARS} characters, got {len(configured)}")
        return configured, False
    if is_loopback(host):
        return None, False
    path = Path(f"{os.fspath(state_path)}.token")
    try:
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text, False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"token: cannot read {path} ({exc.strerror or exc})") from None
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
    except OSError as exc:
        raise ConfigError(f"token: cannot write {path} ({exc.strerror or exc})") from None
    log.warning("generated an API token (kept in %s)", path)
    return token, True


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an absent or oversized token never matches."""
    if not given or len(given) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))
