"""The request pipeline, one module per stage, in the order a request passes them:

routing -> authenticate -> authorize -> ratelimit -> faults -> validate -> resources -> envelope
(-> strict, when on). Every stage that answers early raises `sandbox.errors.ApiError`.
"""
