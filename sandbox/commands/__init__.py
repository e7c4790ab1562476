"""The CLI's subcommands, one module each; `sandbox.cli` parses and dispatches to them."""
