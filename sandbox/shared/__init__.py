"""Shared state: several workers and hosts serving one sandbox, with what changes kept in Redis.

Each worker regenerates the seeded world in its own memory and keeps a copy of every workspace it
serves (seed + changes). Redis holds what changes and decides every order: the change log of each
workspace, the rate windows (`limits`' Redis storage and its Lua scripts), fault-rule counters,
the control state (keys, clock, fault rules), the journal and hosted leases. Each request learns
the versions it needs in the same round trip as its rate-limit hit and applies what it missed
before it is served, so any worker answers from the latest acknowledged state or not at all.
"""
