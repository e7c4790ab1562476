"""More of the world's coherence, declared as invariants: a domain's status follows its SSL
certificate's expiry (warning and critical days are the domain's own), a ticket's type follows
its subject, and a UK MSP's clients keep UK time. The seeded world keeps them (default and other
seeds); a planted contradiction is listed by record id."""

from __future__ import annotations

import copy
from datetime import UTC, timedelta
from typing import Any

import pytest

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.invariants import Violation, check_world

World = dict[str, list[dict[str, Any]]]
NEW = {
    "critical-when-ssl-expires-within-critical-days",
    "not-ok-when-ssl-expires-within-warning-days",
    "requests-are-service-requests",
    "patching-is-a-change",
    "faults-are-incidents",
    "uk-clients-on-london-time",
}


@pytest.fixture(scope="module")
def world(spec: Spec) -> World:
    return build_world(spec, load_recipe())


def _check(spec: Spec, world: World, seed: int | None = None) -> list[Violation]:
    recipe = load_recipe("default", seed) if seed is not None else load_recipe()
    schemas = {name: c.schema for name, c in spec.collections.items()}
    return check_world(world, schemas, int(recipe.epoch.timestamp()), recipe.organisation)


def _at(days: float) -> str:
    epoch = load_recipe().epoch.astimezone(UTC)
    return (epoch + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_new_invariants_are_declared(spec: Spec) -> None:
    declared = {
        inv["id"] for c in spec.collections.values() for inv in c.schema.get("x-invariants") or ()
    }
    assert declared >= NEW


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_seeded_worlds_keep_them(spec: Spec, seed: int | None) -> None:
    world = build_world(spec, load_recipe("default", seed) if seed else load_recipe())
    assert [v for v in _check(spec, world, seed) if v.invariant in NEW] == []


def test_the_seeded_domains_show_every_status_their_certificates_give(world: World) -> None:
    # not a world of `ok` alone: some certificates are near expiry and say so
    assert {d["status"] for d in world["domains"]} == {"ok", "warning", "critical"}


def test_a_domain_whose_certificate_expires_within_its_own_critical_days_must_be_critical(
    spec: Spec, world: World
) -> None:
    bad = copy.deepcopy(world)
    soon, later, custom = bad["domains"][0], bad["domains"][1], bad["domains"][2]
    soon.update(ssl_expires_at=_at(2), status="warning", ssl_critical_days=7)
    later.update(ssl_expires_at=_at(20), status="ok", ssl_warning_days=30)
    # a domain that warns only 10 days out is ok at 20 days
    custom.update(ssl_expires_at=_at(20), status="ok", ssl_warning_days=10, ssl_critical_days=3)
    custom.update(checks=["ssl", "dns"])  # a certificate date is read by the SSL check
    found = {(v.record_id, v.invariant) for v in _check(spec, bad)}
    assert (soon["id"], "critical-when-ssl-expires-within-critical-days") in found
    assert (later["id"], "not-ok-when-ssl-expires-within-warning-days") in found
    assert not any(rid == custom["id"] for rid, _ in found)


def test_a_ticket_typed_against_its_subject_and_a_client_off_uk_time_are_listed(
    spec: Spec, world: World
) -> None:
    bad = copy.deepcopy(world)
    request = next(t for t in bad["tickets"] if t["subject"] == "Install Adobe Acrobat")
    fault = next(t for t in bad["tickets"] if t["subject"] == "VPN disconnects every hour")
    request["type"], fault["type"] = "Incident", "Service Request"
    bad["clients"][0]["time_zone"] = "America/New_York"
    found = {(v.record_id, v.invariant) for v in _check(spec, bad)}
    assert (request["id"], "requests-are-service-requests") in found
    assert (fault["id"], "faults-are-incidents") in found
    assert (bad["clients"][0]["id"], "uk-clients-on-london-time") in found

