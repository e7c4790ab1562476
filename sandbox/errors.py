"""ApiError: the one way any stage answers early, always in the catalogue's envelope."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from opsmerge_sandbox.catalogue import load_catalogue


@dataclass(frozen=True, slots=True)
class Detail:
    location: str  # path | query | header | body
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"location": self.location, "field": self.field, "message": self.message}


@dataclass(slots=True)
class ApiError(Exception):
    """An error answer; its status always comes from the catalogue entry of its code."""

    code: str
    message: str
    details: list[Detail] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    status_override: int | None = None  # only for forced faults of a status with no code of its own

    @property
    def status(self) -> int:
        if self.status_override is not None:
            return self.status_override
        return load_catalogue().status_of(self.code)

    def body(self) -> dict[str, object]:
        err: dict[str, object] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = [d.as_dict() for d in self.details]
        return {"error": err}

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def naming(self, fields: Mapping[str, str]) -> ApiError:
        """This error with the record's fields named as the request named them (an action's
        body field, where the record keeps it under another name)."""

        def named(text: str) -> str:
            for field_name, shown in fields.items():
                text = re.sub(rf"\b{re.escape(field_name)}\b", shown, text)
            return text

        details = [Detail(d.location, named(d.field), named(d.message)) for d in self.details]
        return ApiError(self.code, named(self.message), details, dict(self.headers),
                        self.status_override)

    def as_answer(self) -> ApiError:
        """This error kept as the request's answer, without the traceback and chained
        exceptions whose frames hold the request: kept with them, every refused request was a
        reference cycle only the cyclic collector could free (see sandbox/collector.py)."""
        self.__traceback__ = None
        self.__context__ = self.__cause__ = None
        return self
