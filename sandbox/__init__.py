"""OpsMerge Sandbox: an offline OpsMerge API built from its OpenAPI spec."""

__version__ = "0.1.0"
