"""The pytest plugin (entry point `opsmerge`): options, fixtures, hooks and the report.

pytest loads this module in every run of an environment that has the package installed, so it
imports only pytest and the standard library at the top; the harness is imported when a run
uses it. The built-in suite joins a run when a target is configured (`--opsmerge-target`, its
environment variable or ini key) or `--opsmerge-suite=yes`; the fixtures are always available.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from opsmerge_contracts.options import Options, add_options, resolve

if TYPE_CHECKING:
    import httpx

    from opsmerge_contracts.sandboxes import Sandbox, SandboxPool
    from opsmerge_contracts.scenarios import Scenario
    from opsmerge_contracts.session import Contract, ContractRun
    from opsmerge_contracts.webhook_receiver import WebhookReceiver

SUITE_DIR = Path(
    __file__
).parent  # collected as a directory: suite_test.py and suites/*.contract.yaml
SUITE_PATH = SUITE_DIR / "suite_test.py"
SCENARIO_SUFFIX = ".contract.yaml"
RECORDING_SUFFIX = ".har"  # a recording replayed as a contract (contracts/replay.py)
_OPTIONS = pytest.StashKey["Options"]()
_RUN = pytest.StashKey["ContractRun"]()
_CONTRACT = pytest.StashKey["Contract"]()  # the test's contract, for its report
_REPORT_PATHS = pytest.StashKey["tuple[Path, Path]"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "opsmerge_sandbox(loopback=False, **settings): how the opsmerge_sandbox fixture builds its "
        "sandbox (loopback=True serves it on 127.0.0.1; other keywords are sandbox Settings, "
        "e.g. recipe, seed, rate_limit)",
    )
    options = resolve(config)
    config.stash[_OPTIONS] = options
    if options.run_suite and not _has_arg(config, SUITE_DIR):
        config.args.append(str(SUITE_DIR))


def pytest_sessionstart(session: pytest.Session) -> None:
    """A URL target is checked once before anything runs: a target that is down, is not this
    API or refuses the key stops the run with one line and its own exit code (contracts.preflight)
    instead of failing every contract."""
    options = options_for(session.config)
    if options.in_process or not options.run_suite:
        return  # a run of the user's own tests checks the target when one first uses it
    from opsmerge_contracts.preflight import TargetProblem

    try:
        run_for(session.config).preflight()
    except TargetProblem as problem:
        pytest.exit(f"opsmerge: {problem.line}", returncode=problem.code)


def _has_arg(config: pytest.Config, path: Path) -> bool:
    """Whether an argument already names `path` or something inside it."""
    target = path.resolve()
    for arg in config.args:
        candidate = Path(str(arg).split("::", 1)[0])
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        if resolved == target or target in resolved.parents:
            return True
    return False


def options_for(config: pytest.Config) -> Options:
    return config.stash[_OPTIONS]


def run_for(config: pytest.Config) -> ContractRun:
    """The run's shared state, created on first use."""
    run = config.stash.get(_RUN, None)
    if run is None:
        from opsmerge_contracts.session import ContractRun

        run = ContractRun(options_for(config))
        config.stash[_RUN] = run
    return run


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    options = options_for(config)
    if not options.run_suite and not options.target_given:
        return None
    from opsmerge_contracts.exchange import mask_key

    key = mask_key(options.key) if options.key else "(the sandbox's owner key)"
    budget = options.budget if options.budget is not None else "unlimited"
    lines = [  # short lines: an 80-column terminal shows each whole
        f"opsmerge: target {options.target}",
        f"opsmerge: profile {options.profile}, key {key}, budget {budget}",
    ]
    if options.role_keys:
        labels = ", ".join(label for label, _ in options.role_keys)
        lines.append(f"opsmerge: keys per role: {labels}")
    return lines


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def opsmerge_run(pytestconfig: pytest.Config) -> ContractRun:
    """The contract run: options, spec, target (opened on first use) and report."""
    return run_for(pytestconfig)


@pytest.fixture
def opsmerge_contract(
    request: pytest.FixtureRequest, opsmerge_run: ContractRun
) -> Iterator[Contract]:
    """This test's contract: `call`/`client` record what is sent, `verify()` checks it, and what
    the test created is deleted when it ends."""
    from opsmerge_contracts.session import Contract

    contract = Contract(opsmerge_run, request.node.nodeid)
    request.node.stash[_CONTRACT] = contract
    try:
        yield contract
    finally:
        contract.finish()


@pytest.fixture
def opsmerge_client(opsmerge_contract: Contract) -> httpx.Client:
    """An httpx client bound to the target's API base URL and key, through the guarded transport
    (production profile: GET and HEAD only; budget; pacing). Exchanges are recorded, so
    `opsmerge_contract.verify()` can check them."""
    return opsmerge_contract.client()


@pytest.fixture(scope="session")
def opsmerge_sandbox_pool(pytestconfig: pytest.Config) -> Iterator[SandboxPool]:
    from opsmerge_contracts.sandboxes import SandboxPool, load_factory

    pool = SandboxPool(load_factory(options_for(pytestconfig).app))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def opsmerge_sandbox(request: pytest.FixtureRequest, opsmerge_sandbox_pool: SandboxPool) -> Sandbox:
    """A fresh sandbox for this test: in-process, or on loopback with
    `@pytest.mark.opsmerge_sandbox(loopback=True)`. It has `.base_url`, `.keys`, `.client()` and
    `.admin` (reset, mint_key, advance_clock, add_fault, clear_faults, requests)."""
    marker = request.node.get_closest_marker("opsmerge_sandbox")
    settings: dict[str, Any] = dict(marker.kwargs) if marker else {}
    loopback = bool(settings.pop("loopback", False))
    sandbox = opsmerge_sandbox_pool.get(loopback=loopback, **settings)
    sandbox.reset()
    return sandbox


@pytest.fixture(scope="session")
def opsmerge_sandbox_session(opsmerge_sandbox_pool: SandboxPool) -> Sandbox:
    """One in-process sandbox shared by the whole session (not reset between tests)."""
    return opsmerge_sandbox_pool.get(loopback=False, slot="session")


@pytest.fixture
def opsmerge_webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real webhook receiver on loopback: point a rule's send_webhook URL at `.url`, `trust()`
    the rule's secret, then `wait_for(rule_id=...)`; each delivery says whether its signature
    verified and what is wrong with its body against the spec's `webhooks` schemas. The sandbox
    posts from its own process, so an in-process sandbox reaches it as a loopback one does."""
    from opsmerge_contracts.webhook_receiver import WebhookReceiver

    with WebhookReceiver() as receiver:
        yield receiver


# --- scenario files --------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(SCENARIO_SUFFIX):
        return ScenarioFile.from_parent(parent, path=file_path)
    if file_path.suffix == RECORDING_SUFFIX and parent.session.isinitpath(file_path):
        return RecordingFile.from_parent(parent, path=file_path)  # named on the command line
    if file_path == SUITE_PATH and not _matches_python_files(parent.config, file_path):
        return pytest.Module.from_parent(
            parent, path=file_path
        )  # a project's python_files may exclude it
    return None


def _matches_python_files(config: pytest.Config, path: Path) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(path.name, pattern) for pattern in config.getini("python_files"))


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from opsmerge_contracts.scenarios import load_file

        for scenario in load_file(self.path):
            yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        from opsmerge_contracts.scenarios import run_scenario
        from opsmerge_contracts.session import Contract

        contract = Contract(run_for(self.config), self.nodeid)
        self.stash[_CONTRACT] = contract
        try:
            run_scenario(contract, self.scenario)
        finally:
            contract.finish()

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario: {self.scenario.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from opsmerge_contracts.session import ContractFailure

        if isinstance(excinfo.value, ContractFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class RecordingFile(pytest.File):
    """A HAR recording named on the command line: one contract that replays it."""

    def collect(self) -> Iterator[pytest.Item]:
        yield RecordingItem.from_parent(self, name=f"replay[{self.path.name}]")


class RecordingItem(pytest.Item):
    def runtest(self) -> None:
        from opsmerge_contracts.replay import load, run_replay
        from opsmerge_contracts.session import Contract

        run = run_for(self.config)
        replay = load(self.path, run.spec)
        contract = Contract(run, self.nodeid)
        self.stash[_CONTRACT] = contract
        try:
            run_replay(contract, replay)
        finally:
            contract.finish()

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"replay: {self.path.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from opsmerge_contracts.session import ContractFailure

        if isinstance(excinfo.value, ContractFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


# --- running, outcomes, report -----------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Running out of budget or being throttled without end is a reason to skip, not a failure."""
    try:
        return (yield)
    except Exception as exc:
        from opsmerge_contracts.budget import BudgetExhausted
        from opsmerge_contracts.transport import Throttled

        if isinstance(exc, BudgetExhausted):
            pytest.skip(str(exc))
        if isinstance(exc, Throttled):
            pytest.skip(f"rate limited without end: {exc}")
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    contract = item.stash.get(_CONTRACT, None)
    if contract is None:
        return report
    from opsmerge_contracts.session import ContractFailure

    if call.excinfo is not None and isinstance(call.excinfo.value, ContractFailure):
        report.longrepr = str(call.excinfo.value)
    finished = report.when == "call" or (report.when == "setup" and report.outcome != "passed")
    if report.when == "teardown" and report.outcome == "failed":
        finished = True
    if finished:
        from opsmerge_contracts.report import TestOutcome

        reason = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        outcome = "error" if report.when != "call" and report.failed else report.outcome
        run_for(item.config).report.add_test(
            TestOutcome(item.nodeid, outcome, report.duration, reason)
        )
        ops = sorted({r.operation_id for r in contract.results if r.operation_id})
        failed = sorted({r.check for r in contract.results if r.status == "fail"})
        if report.when == "call":
            item.user_properties.append(("opsmerge_operations", ",".join(ops)))
            item.user_properties.append(("opsmerge_failed_checks", ",".join(failed)))
    return report


_SELECTED = pytest.StashKey[int]()  # how many contracts of the built-in suite were selected


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Collect the built-in suite however the package was installed.

    The suite's folder is added to the run's arguments, but pytest silently drops an argument
    inside a virtualenv (a project's own `.venv`, the usual place for it): then the suite is
    collected here, before `-k`/`-m` select among the items.
    """
    options = options_for(config)
    if options.run_suite and not any(_inside(item.path, SUITE_DIR) for item in items):
        items.extend(_suite_items(session))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Count the contracts left once `-k`, `-m` and the paths have selected (the summary says
    so when a target is set and none are)."""
    session.config.stash[_SELECTED] = sum(1 for i in session.items if _inside(i.path, SUITE_DIR))


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _suite_items(session: pytest.Session) -> list[pytest.Item]:
    nodes: list[pytest.Collector] = [pytest.Module.from_parent(session, path=SUITE_PATH)]
    suites = SUITE_DIR / "suites"
    nodes += [
        ScenarioFile.from_parent(session, path=path)
        for path in sorted(suites.glob(f"*{SCENARIO_SUFFIX}"))
    ]
    items: list[pytest.Item] = []
    for node in nodes:
        items.extend(i for i in session.genitems(node) if isinstance(i, pytest.Item))
    return items


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None:
        return
    run.report.finished = time.time()
    run.close()
    options = options_for(session.config)
    if options.report is not None:
        paths = run.report.write(options.report)
        session.config.stash[_REPORT_PATHS] = paths


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    options = options_for(config)
    if options.run_suite and config.stash.get(_SELECTED, 0) == 0:
        # a target was given, yet the selection (-k, -m, paths) left no contract to run
        terminalreporter.write_line(
            f"opsmerge: no contract was selected against {options.target}: "
            "the built-in suite did not run (check -k, -m and the paths given)",
            yellow=True,
        )
    run = config.stash.get(_RUN, None)
    if run is None or not run.report.tests:
        return
    if not run.report.has_findings and not options_for(config).run_suite:
        return  # the user's own tests used the fixtures and checked nothing: no empty table
    terminalreporter.write_sep("=", "OpsMerge contracts")
    width = int(getattr(terminalreporter._tw, "fullwidth", 80)) or 80
    terminalreporter.write(
        run.report.render_summary(
            width=width, color=terminalreporter.hasmarkup, verbose=config.get_verbosity() > 0
        )
    )
    paths = config.stash.get(_REPORT_PATHS, None)
    if paths:
        for path in paths:  # one a line: a long path does not push the other off the screen
            terminalreporter.write_line(f"opsmerge report: {path}")
