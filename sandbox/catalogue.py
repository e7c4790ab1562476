"""The error catalogue: every code the API emits, with its status and meaning.

One file beside the spec holds it, so the server, the docs, the spec check and the contracts all
agree on what a code means and which status it travels with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from opsmerge_sandbox.yamlio import load_yaml

CATALOGUE_PATH = Path(__file__).parent / "openapi" / "errors.yaml"


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    status: int
    meaning: str
    documented: bool


@dataclass(frozen=True, slots=True)
class Catalogue:
    codes: dict[str, ErrorCode]
    defaults: dict[int, str]

    def status_of(self, code: str) -> int:
        return self.codes[code].status

    def code_for_status(self, status: int) -> str:
        """The catalogue's code for a status; 4xx/5xx without one fall back to the class default."""
        if status in self.defaults:
            return self.defaults[status]
        return self.defaults[500] if status >= 500 else self.defaults[400]

    def as_list(self) -> list[dict[str, object]]:
        return [
            {"code": e.code, "status": e.status, "meaning": e.meaning, "documented": e.documented}
            for e in self.codes.values()
        ]


def parse_catalogue(raw: dict) -> Catalogue:
    codes = {
        e["code"]: ErrorCode(e["code"], int(e["status"]), e["meaning"], bool(e["documented"]))
        for e in raw["errors"]
    }
    defaults = {int(k): v for k, v in (raw.get("defaults") or {}).items()}
    return Catalogue(codes, defaults)


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    return parse_catalogue(load_yaml(path))
