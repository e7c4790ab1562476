"""The control API's admin token: given by the user, kept with the data directory, or made up.

A token that changes on every start breaks every script that drives `/_sandbox`, so there are
three ways to fix it, the first found winning: `serve --admin-token`, the environment variable
(which `make serve ADMIN_TOKEN=...` sets), or, with `--data-dir`, a token made up once and kept in
the directory (mode 0600) for the next start. Without any of them a token is made up per run.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENV = "OPSMERGE_SANDBOX_ADMIN_TOKEN"
TOKEN_FILE = "admin-token"
MAX_LENGTH = 512


class TokenError(ValueError):
    """A token that cannot be used; the message names where it came from, never the token."""


def new_token() -> str:
    return "sbx_admin_" + secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class AdminToken:
    value: str
    source: str  # "option", "environment", "kept", "new-kept" or "generated"
    path: Path | None = None  # the token file, for "kept" and "new-kept"

    @property
    def given(self) -> bool:
        """Whether the user chose the token (then it is never printed)."""
        return self.source in ("option", "environment")

    def describe(self) -> str:
        """Where the token came from, for the banner."""
        if self.source == "option":
            return "the one given with --admin-token"
        if self.source == "environment":
            return f"the one in {ENV} (make serve ADMIN_TOKEN=... sets it)"
        if self.source == "kept":
            return f"kept in {self.path}"
        if self.source == "new-kept":
            return f"made up now and kept in {self.path} for the next start"
        return (
            "made up for this run; fix it with make serve ADMIN_TOKEN=..., "
            f"{ENV}, --admin-token or --data-dir"
        )


def problem(token: str) -> str | None:
    """Why a token cannot be sent in a header, or None. Never quotes the token."""
    if len(token) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters"
    if not all("!" <= ch <= "~" for ch in token):
        return "it may hold only visible ASCII characters (no spaces or control characters)"
    return None


def resolve(option: str | None, environment: str | None, data_dir: Path | None) -> AdminToken:
    """The token to use: the option, the environment, the data directory's, or a new one."""
    for value, source, where in (
        (option, "option", "--admin-token"),
        (environment, "environment", ENV),
    ):
        if value:
            why = problem(value)
            if why:
                raise TokenError(f"the admin token from {where} is not usable: {why}")
            return AdminToken(value, source)
    if data_dir is not None:
        return kept_token(data_dir)
    return AdminToken(new_token(), "generated")


def kept_token(data_dir: Path) -> AdminToken:
    """The token kept in `data_dir`, made up and written (mode 0600) when there is none yet.

    The new file appears whole or not at all: it is written under a temporary name and linked
    into place, so a crash leaves no empty token file and two starts racing keep one token.
    """
    path = data_dir / TOKEN_FILE
    if not path.exists():
        token = new_token()
        try:
            fd, temp = tempfile.mkstemp(prefix=".admin-token-", dir=data_dir)  # mode 0600
            try:
                os.write(fd, (token + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, path)
                return AdminToken(token, "new-kept", path)
            except FileExistsError:
                pass  # another start made it first: use that one
            finally:
                os.unlink(temp)
        except OSError as exc:
            raise TokenError(f"{path}: cannot keep the admin token ({exc.strerror})") from exc
    return AdminToken(_read(path), "kept", path)


def _read(path: Path) -> str:
    """The kept token, with its file made private again if someone opened it up."""
    try:
        if not path.is_file():
            raise TokenError(f"{path}: the admin token file is not a regular file")
        token = path.read_text(encoding="ascii").strip()
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
    except UnicodeDecodeError:
        raise TokenError(f"{path}: the admin token file is not ASCII text") from None
    except OSError as exc:
        raise TokenError(f"{path}: cannot read the admin token ({exc.strerror})") from exc
    why = "it is empty" if not token else problem(token)
    if why:
        raise TokenError(f"{path}: the kept admin token is not usable: {why}; delete the file")
    return token
