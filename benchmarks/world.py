"""How long the seeded world takes to build, and how much memory it holds.

    .venv/bin/python benchmarks/world.py [--recipe default --recipe large] [--repeat 5]

Each recipe runs in a fresh process, so one's memory does not count against the other: the spec
and recipe are loaded first (not timed), then `build_world` is timed; the best of `--repeat`
runs is reported for recipes under 100k records (one run for larger ones), next to the first
(cold) run. Peak memory is the
process's peak resident set size (`getrusage`) above what it held before building.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(recipe_name: str, repeat: int) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from opsmerge_sandbox.spec import load_spec
    from opsmerge_sandbox.world import build_world, load_recipe
    from opsmerge_sandbox.world.values import faker_generator

    start = time.perf_counter()
    spec = load_spec()
    recipe = load_recipe(recipe_name)
    faker_generator()
    setup = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    records = 0
    for _ in range(repeat):
        start = time.perf_counter()
        world = build_world(spec, recipe)
        times.append(time.perf_counter() - start)
        records = sum(len(v) for v in world.values())
        if records >= 100_000:
            break
        del world
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "recipe": recipe_name,
        "records": records,
        "agents": recipe.counts.get("agents", 0),
        "first_s": round(times[0], 3),
        "build_s": round(min(times), 3),
        "runs": len(times),
        "setup_s": round(setup, 3),
        "peak_rss_mib": round((peak - before) / 1024, 1),
        "us_per_record": round(min(times) / max(records, 1) * 1e6, 1),
    }


# what the seeded world must stay within (measured on a quiet machine)
DEFAULT_FIRST_S = 0.5  # the default world, built in a fresh process
LARGE_BUILD_S = 20.0
LARGE_PEAK_MIB = 500.0


def _targets(row: dict[str, object]) -> list[tuple[str, bool]]:
    first, peak = float(row["first_s"]), float(row["peak_rss_mib"])  # type: ignore[arg-type]
    if row["recipe"] == "default":
        label = f"default first build <= {DEFAULT_FIRST_S} s ({first} s)"
        return [(label, first <= DEFAULT_FIRST_S)]
    if row["recipe"] == "large":
        return [
            (f"large build <= {LARGE_BUILD_S:.0f} s ({first} s)", first <= LARGE_BUILD_S),
            (f"large peak <= {LARGE_PEAK_MIB:.0f} MiB ({peak} MiB)", peak <= LARGE_PEAK_MIB),
        ]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.repeat)))
        return 0
    rows = []
    for name in args.recipe or ["default", "large"]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=True,
        ).stdout
        rows.append(json.loads(out))
    print(f"{'recipe':<10}{'records':>10}{'agents':>9}{'first s':>9}{'best s':>9}{'us/rec':>8}"
          f"{'peak MiB':>10}{'setup s':>9}")
    for r in rows:
        print(f"{r['recipe']:<10}{r['records']:>10}{r['agents']:>9}{r['first_s']:>9}"
              f"{r['build_s']:>9}{r['us_per_record']:>8}{r['peak_rss_mib']:>10}{r['setup_s']:>9}")
    for r in rows:
        for label, ok in _targets(r):
            print(f"target {label}: {'met' if ok else 'missed'}")
    print("first: the first build in a fresh process (free-text pools included); best: the "
          "fastest of the runs; peak MiB: resident memory added by building; setup: spec, "
          "recipe and Faker loading, not in the build times")
    return 0


if __name__ == "__main__":
    sys.exit(main())
