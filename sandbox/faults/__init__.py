"""Faults on purpose: forced statuses, delays and broken connections, per request or by rule.

`rules` holds the rule registry, `prefer` the Prefer grammar, `presets` the named scenarios,
`loader` the `serve --faults FILE` loader, `control_endpoints` the `/_sandbox/faults` endpoints
and `connection` the layer that breaks connections around the app. The pipeline's stage that
applies them per request is `sandbox/pipeline/faults.py`.
"""
