"""The exit codes of a contract run, in one table that `--help`, the README and the code share.

pytest's own codes are 0-5; the harness's start at 10 so a CI script can tell "the target is
not there" from "a contract failed". Importing this module costs nothing (the CLI builds its
parser from it).
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
NO_TESTS = 5
UNREACHABLE = 10
NOT_THIS_API = 11
KEY_REJECTED = 12
ADMIN_REJECTED = 13

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "every selected contract passed"),
    (FAILED, "a contract failed"),
    (USAGE, "bad options (e.g. a URL target with neither a key nor an admin token)"),
    (NO_TESTS, "no contract was selected"),
    (UNREACHABLE, "the target could not be reached (refused, unknown host, timed out)"),
    (NOT_THIS_API, "the target answered, but not as this API does"),
    (KEY_REJECTED, "the target refused the key (401)"),
    (ADMIN_REJECTED, "the admin token was refused, or the target has no control API"),
)
