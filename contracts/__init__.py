"""The OpsMerge contract harness: the same contracts against the sandbox and any deployment.

Importing this package is cheap on purpose: pytest loads `contracts.plugin` in every run of an
environment that has the package installed, so the heavy parts (the sandbox app, hypothesis,
jsonschema) are imported only when a run asks for a target.
"""
