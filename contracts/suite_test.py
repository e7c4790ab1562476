"""The built-in contract suite, collected when a run has a target (or `--opsmerge-suite=yes`).

Every test here is parametrized from the spec, so the suite grows with it: a new operation gets
its contracts with no code. Test ids name the operation (`test_pagination[listTickets]`), so
`-k` selects by operation or by contract. The built-in scenarios (`suites/*.contract.yaml`) are
collected beside this module as scenario files.
"""

from __future__ import annotations

import pytest

from opsmerge_contracts import contract_plan, probes
from opsmerge_contracts.options import Options
from opsmerge_contracts.plugin import run_for
from opsmerge_contracts.session import Contract
from opsmerge_sandbox.spec import Operation

_OPERATIONS = {
    "test_conforms": contract_plan.conformance_operations,
    "test_auth": contract_plan.auth_operations,
    "test_pagination": contract_plan.list_operations,
    "test_bodies": contract_plan.body_operations,
    "test_unknown_id": contract_plan.unknown_id_operations,
    "test_role_matrix": contract_plan.role_matrix_operations,
    "test_webhooks": contract_plan.webhook_operations,
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "operation" in metafunc.fixturenames:
        run = run_for(metafunc.config)
        ops = _OPERATIONS[metafunc.function.__name__](run.spec)
        if metafunc.function.__name__ == "test_role_matrix" and not _has_role_keys(run.options):
            metafunc.parametrize("operation", [pytest.param(None, marks=pytest.mark.skip(
                reason="no keys per role: give --opsmerge-key-for ROLE=KEY (or a keys file) to "
                "prove 403 FORBIDDEN and SCOPE_DENIED per role"))], ids=["no-role-keys"])
            return
        metafunc.parametrize("operation", ops, ids=[op.operation_id for op in ops])


def _has_role_keys(options: Options) -> bool:
    """Keys given per role, or a sandbox the run can mint them on (in-process or admin token)."""
    return bool(options.role_keys) or options.in_process or options.admin_token is not None


def test_conforms(opsmerge_contract: Contract, operation: Operation) -> None:
    """A well-formed request succeeds and its response follows every convention."""
    probes.conformance(opsmerge_contract, operation)


def test_auth(opsmerge_contract: Contract, operation: Operation) -> None:
    """No key and malformed keys get 401; a key without the scope 403; with it, success."""
    probes.auth(opsmerge_contract, operation)


def test_pagination(opsmerge_contract: Contract, operation: Operation) -> None:
    """Pages add up to the total, hold no repeats, keep their order and respect the bounds."""
    probes.pagination(opsmerge_contract, operation)


def test_bodies(opsmerge_contract: Contract, operation: Operation) -> None:
    """Generated valid bodies are accepted and read back as sent; invalid ones get 400."""
    probes.bodies(opsmerge_contract, operation)


def test_unknown_id(opsmerge_contract: Contract, operation: Operation) -> None:
    """An id that does not exist gives 404 NOT_FOUND."""
    probes.unknown_id(opsmerge_contract, operation)


def test_role_matrix(opsmerge_contract: Contract, operation: Operation) -> None:
    """Each key per role: 403 FORBIDDEN where its role lacks the scope, 403 SCOPE_DENIED where
    only the key's scopes exclude it, and success otherwise."""
    probes.role_matrix(opsmerge_contract, operation)


def test_webhooks(opsmerge_contract: Contract, operation: Operation) -> None:
    """A rule on the event this write makes posts a signed webhook the spec's `webhooks`
    describe (sandbox targets: the receiver listens on this machine's loopback)."""
    probes.webhooks(opsmerge_contract, operation)


def test_rate_limit_headers(opsmerge_contract: Contract) -> None:
    """Every response describes the key's bucket, and Remaining goes down."""
    probes.rate_limit_burst(opsmerge_contract)


def test_rate_limit_retry(opsmerge_contract: Contract) -> None:
    """Past the limit: 429 with Retry-After; after waiting that long, the retry passes."""
    probes.rate_limit_retry(opsmerge_contract)
