"""`opsmerge-sandbox keys` and `opsmerge-sandbox fixtures dump`: the seeded world from a shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from opsmerge_sandbox.pipeline.authorize import AuthModel
from opsmerge_sandbox.progress import progress
from opsmerge_sandbox.spec import Spec, load_spec
from opsmerge_sandbox.world.conditions import ConditionError
from opsmerge_sandbox.world.generator import World, build_world, world_size
from opsmerge_sandbox.world.invariants import Violation, check_world, compile_invariants
from opsmerge_sandbox.world.recipe import Recipe, RecipeError, key_status, load_recipe
from opsmerge_sandbox.world.record_shapes import shape_violations
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


def _build(spec: Spec, recipe: Recipe) -> World:
    """The world, with progress on standard error for a large one."""
    total = world_size(spec, recipe)
    with progress(f"Building world {recipe.name} (seed {recipe.seed})", total) as report:
        return build_world(spec, recipe, progress=report)


def dump_command(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    spec, recipe = loaded
    try:
        world = _build(spec, recipe)
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


def check_command(args: argparse.Namespace) -> int:
    """Judge a seeded world by every `x-invariants` declaration of the spec.

    Violations go to standard output (one line each: collection, record id, invariant, class,
    what was found), a summary by invariant to standard error; exit 1 when there is any.
    """
    if getattr(args, "against", None):
        return _check_live(args)
    loaded = _load(args)
    if loaded is None:
        return 2
    spec, recipe = loaded
    schemas = {name: c.schema for name, c in spec.collections.items()}
    try:
        invariants = compile_invariants(schemas)
        world = _build(spec, recipe)
    except (GenerationError, ConditionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = sum(len(v) for v in world.values())
    with progress("Checking invariants", records if records >= 20_000 else 0) as report:
        violations = check_world(
            world,
            schemas,
            int(recipe.epoch.timestamp()),
            recipe.organisation,
            invariants,
            progress=lambda what, done, total: report(what, done * records // max(total, 1), 0),
        )
    violations = shape_violations(world, schemas) + violations
    by_rule: dict[tuple[str, str], list[Violation]] = {}
    for v in violations:
        by_rule.setdefault((v.klass, v.invariant), []).append(v)
    limit = max(0, int(getattr(args, "limit", 50) or 0))
    if getattr(args, "json", False):
        rows = [
            {"collection": v.collection, "id": v.record_id, "invariant": v.invariant,
             "class": v.klass, "detail": v.detail}
            for group in by_rule.values()
            for v in (group[:limit] if limit else group)
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for group in by_rule.values():
            for v in group[:limit] if limit else group:
                print(f"{v.collection}\t{v.record_id}\t{v.invariant}\t{v.klass}\t{v.detail}")
    classes: dict[str, int] = {}
    for (klass, _), group in by_rule.items():
        classes[klass] = classes.get(klass, 0) + len(group)
    print(
        f"{len(invariants)} invariants over {records:,} records (recipe {recipe.name}, "
        f"seed {recipe.seed}): {len(violations)} violation(s)",
        file=sys.stderr,
    )
    for (klass, rule), group in sorted(by_rule.items()):
        print(f"  {klass:<12} {rule:<40} {len(group)}", file=sys.stderr)
    return 1 if violations else 0


def _check_live(args: argparse.Namespace) -> int:
    """`--against URL`: ask a running sandbox to judge one workspace's written records (the
    invariants writes keep); the same output and exit status as a seeded-world check."""
    import httpx

    from opsmerge_sandbox.control_api import TOKEN_HEADER

    url = f"{str(args.against).rstrip('/')}/_sandbox/workspaces/{args.workspace}/invariants"
    try:
        answer = httpx.get(url, headers={TOKEN_HEADER: args.admin_token or ""}, timeout=120)
    except httpx.HTTPError as exc:
        print(f"error: {url}: {exc}", file=sys.stderr)
        return 2
    if answer.status_code != 200:
        print(f"error: {url} answered {answer.status_code}: {answer.text[:300]}", file=sys.stderr)
        return 2
    data = answer.json()["data"]
    found = data["violations"]
    limit = max(0, int(getattr(args, "limit", 50) or 0))
    shown = found[:limit] if limit else found
    if getattr(args, "json", False):
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    else:
        for v in shown:
            print(f"{v['collection']}\t{v['id']}\t{v['invariant']}\t{v['class']}\t{v['detail']}")
    judged = sum(data["judged"].values())
    print(
        f"{judged:,} written record(s) of workspace {data['workspace']} judged: "
        f"{data['total']} violation(s)",
        file=sys.stderr,
    )
    return 1 if data["total"] else 0
