"""Keys per role, and what each may do: the auth matrix's expectations.

A deployment's role checks can only be proven with keys held by users of those roles, so the run
takes any number of them, each under a label the user picks (`ROLE=KEY`, on the command line, in
a file or in the environment). What a key may do is learned from the identity operation
(`/auth/me`): the owner's roles and the key's effective scopes (the role's permissions narrowed
by the key's scopes). From those, every operation has an expected answer for every key:

- its scope is among the key's effective scopes: the request succeeds;
- the owner's roles do not grant it: 403 `FORBIDDEN`;
- the roles grant it, the key's own scopes exclude it: 403 `SCOPE_DENIED`.

The identity of a full-access key tells what its owner's roles grant (nothing narrows it). For a
custom-scope key the roles' grants are known when a full-access key of the same user is given
too; otherwise the two refusals cannot be told apart and the matrix says so instead of guessing.

Against a sandbox it can administer, the run mints its own keys: a full-access key for one active
user of each role the world has, and one narrowed key, so the matrix runs in every self-test.
Labels, never keys, appear in messages; a key is never printed in full or in part.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by the options of every pytest run: the standard library only
    import httpx

    from opsmerge_contracts.target import Target
    from opsmerge_sandbox.spec import Operation, Spec

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
ALLOWED, FORBIDDEN, SCOPE_DENIED, REFUSED = "allowed", "forbidden", "scope_denied", "refused"
# each expectation's exchange role, read by the checks of the same name
EXCHANGE_ROLE = {
    ALLOWED: "role-allowed",
    FORBIDDEN: "role-forbidden",
    SCOPE_DENIED: "role-scope-denied",
    REFUSED: "role-refused",
}
EXPECTED_ANSWER = {
    ALLOWED: "success",
    FORBIDDEN: "403 FORBIDDEN",
    SCOPE_DENIED: "403 SCOPE_DENIED",
    REFUSED: "403 FORBIDDEN or SCOPE_DENIED",
}


class KeyEntryError(ValueError):
    """A `ROLE=KEY` entry that cannot be used; the message names where, never the key."""


def parse_entries(text: str, source: str) -> list[tuple[str, str]]:
    """`ROLE=KEY` entries separated by `;` or new lines (`#` starts a comment line)."""
    entries: list[tuple[str, str]] = []
    parts = [p.strip() for line in text.splitlines() for p in line.split(";")]
    for n, part in enumerate((p for p in parts if p and not p.startswith("#")), 1):
        label, sep, key = part.partition("=")
        entries.append(_entry(label.strip(), key.strip(), f"{source}, entry {n}", bool(sep)))
    return entries


def _entry(label: str, key: str, where: str, has_sep: bool = True) -> tuple[str, str]:
    if not has_sep:
        raise KeyEntryError(f"{where}: expected ROLE=KEY, found no '='")
    if not LABEL.match(label):
        raise KeyEntryError(
            f"{where}: the role label must be 1-64 letters, digits, '_', '.', ':' or '-'"
            + (" (it is empty)" if not label else "")
        )
    if not key or any(ch.isspace() for ch in key):
        raise KeyEntryError(
            f"{where}: the key for {label!r} is " + ("empty" if not key else "not one word")
        )
    return label, key


def load_file(path: Path) -> list[tuple[str, str]]:
    """A keys file: a JSON object {"ROLE": "KEY"} or `ROLE=KEY` lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyEntryError(f"keys file {path}: cannot be read ({exc.strerror})") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KeyEntryError(f"keys file {path}: not valid JSON (line {exc.lineno})") from None  # type: ignore[attr-defined]
        if not isinstance(data, dict):
            raise KeyEntryError(f"keys file {path}: expected an object of ROLE: KEY")
        out = []
        for label, key in data.items():
            if not isinstance(key, str):
                raise KeyEntryError(f"keys file {path}: the key for {label!r} is not a string")
            out.append(_entry(str(label).strip(), key.strip(), f"keys file {path}"))
        return out
    return parse_entries(text, f"keys file {path}")


def merge(*sources: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Entries from every source; a label given twice is a mistake, not an override."""
    seen: dict[str, str] = {}
    for entries in sources:
        for label, key in entries:
            if label in seen:
                raise KeyEntryError(f"the role label {label!r} is given twice")
            seen[label] = key
    return tuple(seen.items())


# --- what a key may do ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoleKey:
    label: str
    key: str
    user_id: str
    role_ids: tuple[str, ...]
    role_names: tuple[str, ...]
    full: bool  # full access: the effective scopes are what the roles grant
    effective: frozenset[str]
    granted: frozenset[str] | None  # what the owner's roles grant; None when not known
    minted: bool = False

    @property
    def who(self) -> str:
        """How messages name the key: its label and its owner's roles (never the key)."""
        roles = ", ".join(self.role_names) or "no role"
        return f"key {self.label!r} (role {roles})"

    def expectation(self, op: Operation) -> tuple[str, str]:
        """(ALLOWED | FORBIDDEN | SCOPE_DENIED | REFUSED, the scope it turns on)."""
        if not op.scopes:
            return ALLOWED, ""
        scope = op.scopes[0]
        if scope in self.effective:
            return ALLOWED, scope
        if self.granted is None:
            return REFUSED, scope
        return (SCOPE_DENIED if scope in self.granted else FORBIDDEN), scope


class RoleKeyProblem(Exception):
    """A key given per role that cannot be used (refused, or no identity to read)."""


def identity_op(spec: Spec) -> Operation | None:
    return next((o for o in spec.operations if o.kind == "identity" and not o.session_only), None)


def learn(
    target: Target, spec: Spec, entries: tuple[tuple[str, str], ...], minted: bool = False
) -> list[RoleKey]:
    """Each key's owner, roles and effective scopes from the identity operation."""
    op = identity_op(spec)
    if op is None:
        raise RoleKeyProblem("the spec has no identity operation to learn a key's roles from")
    seen: list[tuple[str, str, dict[str, Any]]] = []
    for label, key in entries:
        with target.client(key=key) as client:
            response = client.get(op.path, extensions={"opsmerge": {"record": False}})
        data = _data(response)
        if response.status_code != 200 or not isinstance(data, dict):
            code = _code(response)
            raise RoleKeyProblem(
                f"the key for {label!r} was answered {response.status_code}"
                f"{' ' + code if code else ''} by {op.method} {op.path}: "
                "check the key given for that role"
            )
        seen.append((label, key, data))
    granted_by_user: dict[str, set[str]] = {}
    for _, _, data in seen:
        if _access(data) == "full":
            granted_by_user.setdefault(_user(data), set()).update(_scopes(data))
    out = []
    for label, key, data in seen:
        full = _access(data) == "full"
        granted = granted_by_user.get(_user(data))
        if isinstance(data.get("role_scopes"), list):  # the target says what the role allows
            granted = {str(s) for s in data["role_scopes"]}
        roles = [r for r in data.get("roles") or [] if isinstance(r, dict)]
        out.append(
            RoleKey(
                label=label,
                key=key,
                user_id=_user(data),
                role_ids=tuple(str(r.get("id", "")) for r in roles),
                role_names=tuple(str(r.get("name") or r.get("id", "")) for r in roles),
                full=full,
                effective=frozenset(_scopes(data)),
                granted=frozenset(granted) if granted is not None else None,
                minted=minted,
            )
        )
    return out


def _data(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("data") if isinstance(body, dict) else None


def _code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def _access(data: dict[str, Any]) -> str:
    key = data.get("key")
    return str(key.get("access", "")) if isinstance(key, dict) else ""


def _user(data: dict[str, Any]) -> str:
    user = data.get("user")
    return str(user.get("id", "")) if isinstance(user, dict) else ""


def _scopes(data: dict[str, Any]) -> list[str]:
    return [str(s) for s in data.get("scopes") or []]


# --- minted keys, on a sandbox the run administers ------------------------------------------------


def mint_per_role(target: Target, spec: Spec, users: list[dict[str, Any]]) -> list[RoleKey]:
    """A full-access key for one active user of each role, and one narrowed key; learned from
    the identity operation like any given key. `users` are records of the spec's users
    collection (its `x-sandbox-auth` names the role and status fields)."""
    from opsmerge_contracts.sandbox_control import AdminError

    auth = spec.resolved.get("x-sandbox-auth") or {}
    roles_field = str(auth.get("role-ids-field") or "")
    status_field = str(auth.get("status-field") or "")
    inactive = set(auth.get("inactive-statuses") or [])
    holders: dict[str, list[str]] = {}
    for user in users:
        role_ids = user.get(roles_field) or []
        if user.get(status_field) in inactive or not isinstance(role_ids, list):
            continue
        if len(role_ids) == 1:  # one role each, so a refusal is that role's
            holders.setdefault(str(role_ids[0]), []).append(str(user["id"]))
    entries = []
    for role_id, user_ids in sorted(holders.items()):
        for user_id in user_ids:
            # a user the run made in its own workspace is not the sandbox's to mint a key for
            # (`/_sandbox/keys` names users of the seeded world): the role's next holder is
            try:
                key = target.mint_for_user(user_id, None)
            except AdminError:
                continue
            if key:
                entries.append((role_id, key))
            break
    keys = learn(target, spec, tuple(entries), minted=True)
    keys = [_relabel(k) for k in keys]
    narrow = _narrowed(target, spec, keys)
    return keys + narrow


def _relabel(k: RoleKey) -> RoleKey:
    label = (k.role_names[0] if k.role_names else k.label).lower().replace(" ", "-")
    return RoleKey(
        label if LABEL.match(label) else k.label,
        k.key,
        k.user_id,
        k.role_ids,
        k.role_names,
        k.full,
        k.effective,
        k.granted,
        minted=True,
    )


def _narrowed(target: Target, spec: Spec, keys: list[RoleKey]) -> list[RoleKey]:
    """One custom-scope key whose roles grant more than it has: its own scopes are those of the
    level its roles grant most of, so the other levels they grant are SCOPE_DENIED and what they
    do not grant stays FORBIDDEN."""
    for k in sorted(keys, key=lambda k: (len(k.effective), k.label)):
        levels = sorted({s.partition(":")[2] for s in k.effective})
        if len(levels) < 2 or k.granted is None:
            continue
        level = max(levels, key=lambda lv: sum(s.endswith(":" + lv) for s in k.effective))
        scopes = sorted(s for s in k.effective if s.endswith(":" + level))
        minted = target.mint_for_user(k.user_id, tuple(scopes))
        if not minted:
            return []
        (learned,) = learn(target, spec, ((k.label + "-narrow", minted),), minted=True)
        return [
            RoleKey(
                learned.label,
                learned.key,
                learned.user_id,
                learned.role_ids,
                learned.role_names,
                learned.full,
                learned.effective,
                k.granted,  # the same user's full-access key tells what the roles grant
                minted=True,
            )
        ]
    return []
