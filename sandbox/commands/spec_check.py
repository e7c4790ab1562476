"""`opsmerge-sandbox spec check [PATH]`: read the spec and its catalogue, check, print the result.

Reading is kept apart from checking: a file that is missing, is not YAML or is not a mapping
has nothing to check and exits 2, while a readable spec with problems exits 1. The spec names
its catalogue (`x-error-catalogue`), so checking a copy of the spec checks its own catalogue.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from opsmerge_sandbox.catalogue import CATALOGUE_PATH, Catalogue, load_catalogue, parse_catalogue
from opsmerge_sandbox.spec import SPEC_PATH
from opsmerge_sandbox.speccheck.document import count_operations
from opsmerge_sandbox.speccheck.lint import check_spec
from opsmerge_sandbox.yamlio import load_yaml


class UnreadableSpec(Exception):
    """The file is missing, is not YAML, or is not a mapping: nothing to check."""


def read_spec(path: Path) -> tuple[dict[str, Any], Catalogue]:
    """The document and its catalogue: the `x-error-catalogue` file beside it, else the bundled."""
    import yaml

    try:
        raw = load_yaml(path)
    except OSError as exc:
        raise UnreadableSpec(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UnreadableSpec(f"{path} is not valid YAML: {_yaml_reason(exc)}") from None
    if not isinstance(raw, dict):
        raise UnreadableSpec(f"{path} is not an OpenAPI document (its top level is not a mapping)")
    name = raw.get("x-error-catalogue")
    beside = path.parent / name if isinstance(name, str) else None
    if beside is None or not beside.is_file() or beside.resolve() == CATALOGUE_PATH.resolve():
        return raw, load_catalogue()
    try:
        return raw, parse_catalogue(load_yaml(beside))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise UnreadableSpec(f"cannot read the error catalogue {beside}: {exc}") from None


def _yaml_reason(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def check_command(args: argparse.Namespace) -> int:
    """Exit 0 when the spec is sound, 1 when it has problems, 2 when it cannot be read."""
    from rich.console import Console
    from rich.text import Text

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    path = Path(args.path) if getattr(args, "path", None) else SPEC_PATH
    try:
        raw, catalogue = read_spec(path)
    except UnreadableSpec as exc:
        err.print(Text(f"error: {exc}", style="bold red"))
        return 2
    problems = check_spec(raw, catalogue)
    operations = count_operations(raw)
    if not problems:
        summary = f"{path}: {operations} operations, valid OpenAPI 3.1, conventions hold"
        out.print(Text.assemble(("OK ", "bold green"), summary))
        return 0
    for problem in problems:
        out.print(
            Text.assemble(
                (problem.where, "bold"), "  ", (f"[{problem.rule}]", "cyan"), " ", problem.message
            )
        )
    noun = "problem" if len(problems) == 1 else "problems"
    out.print(
        Text.assemble(
            (f"{len(problems)} {noun}", "bold red"), f" in {path} ({operations} operations checked)"
        )
    )
    return 1
