"""Faults on purpose: forced statuses, delays and broken connections, per request or by rule.

`install_faults(state)` builds the registry and the pipeline's fault stage (loading
`settings.faults_file`), `add_fault_endpoints` puts the control endpoints on the AdminApi, and
`wrap_connection_faults(app)` puts the layer that breaks connections around the Litestar app.
"""

from __future__ import annotations

from litestar import Litestar

from sandbox.faults.connection import ConnectionFaults
from sandbox.faults.control_endpoints import add_fault_endpoints
from sandbox.faults.loader import FaultsFileError, load_faults
from sandbox.faults.rules import FaultRegistry
from sandbox.faults.stage import FaultStage
from sandbox.state import SandboxState

__all__ = [
    "ConnectionFaults",
    "FaultRegistry",
    "FaultStage",
    "FaultsFileError",
    "add_fault_endpoints",
    "install_faults",
    "registry_of",
    "wrap_connection_faults",
]


def install_faults(state: SandboxState) -> FaultStage:
    """The fault stage of this sandbox, built once per state (a second app on it shares it)."""
    stage = state.extras.get("faults_stage")
    if isinstance(stage, FaultStage):
        return stage
    registry = FaultRegistry(state.clock)
    state.extras["faults"] = registry
    stage = state.extras["faults_stage"] = FaultStage(registry, state)
    if state.settings.faults_file is not None:
        load_faults(state.settings.faults_file, state, registry)
    return stage


def registry_of(state: SandboxState) -> FaultRegistry:
    registry = state.extras["faults"]
    assert isinstance(registry, FaultRegistry)
    return registry


def wrap_connection_faults(app: Litestar) -> Litestar:
    """Wrap the app's outermost ASGI handler, the first place that holds the server's raw send."""
    if not isinstance(app.asgi_handler, ConnectionFaults):
        app.asgi_handler = ConnectionFaults(app.asgi_handler)
    return app
