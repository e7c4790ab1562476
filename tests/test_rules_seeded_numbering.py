"""The seeded world keeps the numbering rules too: what an integrator reads before writing.

Seeded invoices are numbered `INV-YYYY-NNNN` by their issue date's year, 0001 upwards without a
gap in each year and in issue-date order; no seeded client has two primary contacts.
"""

from __future__ import annotations

import re
from collections import defaultdict

from litestar.testing import TestClient

from tests.conftest import bearer, every_record, key_named

API = "/api/v1"
NUMBER = re.compile(r"^INV-(\d{4})-(\d{4,})$")


def _owner(client: TestClient) -> dict[str, str]:
    return bearer(key_named(client.app, "Owner - full"))


def test_seeded_invoices_are_numbered_without_gaps_within_their_issue_year(
    fresh_client: TestClient,
) -> None:
    by_year: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for invoice in every_record(fresh_client, f"{API}/invoices", _owner(fresh_client)):
        found = NUMBER.match(invoice["number"])
        assert found, invoice["number"]
        assert int(found[1]) == int(invoice["issue_date"][:4]), invoice
        by_year[int(found[1])].append((invoice["issue_date"], int(found[2])))
    assert len(by_year) > 1  # the seeded year and the one before it: a restart is exercised
    for dated in by_year.values():
        numbers = [n for _, n in sorted(dated)]
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
        assert numbers == sorted(numbers)  # numbered in issue-date order


def test_no_seeded_client_has_two_primary_contacts(fresh_client: TestClient) -> None:
    primaries: dict[str, int] = defaultdict(int)
    for contact in every_record(fresh_client, f"{API}/contacts", _owner(fresh_client)):
        if contact["is_primary"] and contact["client_id"] is not None:
            primaries[contact["client_id"]] += 1
    assert primaries and max(primaries.values()) == 1
