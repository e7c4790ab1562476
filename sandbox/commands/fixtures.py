"""`opsmerge-sandbox keys` and `opsmerge-sandbox fixtures dump`: the seeded world from a shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from opsmerge_sandbox.pipeline.authorize import AuthModel
from opsmerge_sandbox.spec import Spec, load_spec
from opsmerge_sandbox.world.generator import build_world
from opsmerge_sandbox.world.recipe import Recipe, RecipeError, key_status, load_recipe
from opsmerge_sandbox.world.values import GenerationError

_STATUS_STYLE = {
    "active": "green",
    "expired": "yellow",
    "revoked": "red",
    "owner_deactivated": "red",
}


def key_rows(spec: Spec, recipe: Recipe, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per recipe key: the secret, its owner's role, scopes, status and rate limit.

    Where users, roles and their fields live is the spec's `x-sandbox-auth`.
    """
    auth = AuthModel.from_spec(spec.resolved)
    world = build_world(spec, recipe, collections=[auth.users, auth.roles])
    users = {u["id"]: u for u in world.get(auth.users, [])}
    roles = {r["id"]: r for r in world.get(auth.roles, [])}
    moment = now or datetime.now(UTC)
    rows = []
    for key in recipe.keys:
        user = users.get(key.user_id) or {}
        names = [
            str(roles[rid].get("name", rid))
            for rid in user.get(auth.role_ids_field) or ()
            if rid in roles
        ]
        rows.append(
            {
                "key": key.key,
                "name": key.name,
                "role": ", ".join(names) if names else None,
                "scopes": "full" if key.access == "full" else list(key.scopes),
                "status": key_status(key, users, moment, auth),
                "rate_limit": key.rate_limit if key.rate_limit is not None else recipe.rate_limit,
            }
        )
    return rows


def _load(args: argparse.Namespace) -> tuple[Spec, Recipe] | None:
    try:
        return load_spec(), load_recipe(
            getattr(args, "recipe", None) or "default", getattr(args, "seed", None)
        )
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def keys_command(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    spec, recipe = loaded
    try:
        rows = key_rows(spec, recipe)
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Sandbox API keys (recipe {recipe.name}, seed {recipe.seed})")
    table.add_column("Key", no_wrap=True)  # whole, so it can be copied
    for column in ("Name", "Role", "Scopes", "Status", "Limit/min"):
        table.add_column(column, overflow="fold")
    for row in rows:
        scopes = row["scopes"] if isinstance(row["scopes"], str) else " ".join(row["scopes"])
        style = _STATUS_STYLE.get(row["status"], "")
        table.add_row(
            row["key"],
            row["name"],
            row["role"] or "-",
            scopes,
            f"[{style}]{row['status']}[/]",
            str(row["rate_limit"]),
        )
    console = Console()
    if not console.is_terminal:  # piped: no terminal width to respect, keep rows whole
        console = Console(width=160)
    console.print(table)
    return 0


def dump_command(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    spec, recipe = loaded
    try:
        world = build_world(spec, recipe)
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import msgspec

    out = sys.stdout.buffer
    try:
        out.write(msgspec.json.encode(world, order="sorted"))
        out.write(b"\n")
        out.flush()
    except BrokenPipeError:
        # the reader stopped early (`| head`): that is fine; say nothing and leave quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0
