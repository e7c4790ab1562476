"""OpsMerge Sandbox: an offline OpsMerge API built from its OpenAPI spec."""

from opsmerge_sandbox import native

__version__ = "0.1.0"

native.install()  # the request path's compiled modules, when built from these very sources
