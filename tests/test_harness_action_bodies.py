"""An action's body names records the record it creates may name.

`runScript` creates a script run, whose agents must be on one of the script's platforms (the
run's `x-ref.where: {platform: script_id->platforms}`); the action's own request schema cannot say
so. Whichever agents the harness's pool would otherwise have drawn, the well-formed request names
agents the sandbox accepts.
"""

from __future__ import annotations

import json
from typing import Any

from opsmerge_contracts import probes
from opsmerge_contracts.session import Contract, ContractRun
from tests.conftest import every_record

DRAWS = 12  # pool draws enough to name agents of every platform


def _sent_and_scripts_platforms(run: ContractRun, draw: int) -> tuple[Any, list[str]]:
    """Run runScript's conformance contract on another of the pool's draws: the well-formed
    exchange and the platforms of the script it ran (read before the contract deletes it)."""
    run.pool._rng.seed(draw)
    contract = Contract(run, f"runScript[{draw}]")
    try:
        probes.conformance(contract, run.spec.operation("runScript"))
        (sent,) = [e for e in contract.exchanges if e.role == "well-formed"]
        script_id = sent.request.url.rstrip("/").split("/")[-2]
        with run.target.client() as client:
            platforms = client.get(f"/scripts/{script_id}").json()["data"]["platforms"]
        return sent, platforms
    finally:
        contract.finish()


def test_a_run_names_agents_on_one_of_the_scripts_platforms(sandbox_run: ContractRun) -> None:
    with sandbox_run.target.client() as client:
        agents = {a["id"]: a for a in every_record(client, "/agents", {})}
    for draw in range(DRAWS):
        sent, platforms = _sent_and_scripts_platforms(sandbox_run, draw)
        assert sent.response.status == 202, (draw, sent.response.body)
        named = json.loads(sent.request.body)["agent_ids"]
        assert named and all(agents[a]["platform"] in platforms for a in named), (draw, named)
