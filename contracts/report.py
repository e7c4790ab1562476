"""What a run found, for people: a rich summary, a JSON report and a self-contained HTML page.

Every failing exchange appears in full (request, response, the check that failed and why) with a
curl line that sends it again; keys appear masked, and the curl line reads them from the
environment. The HTML page has no external assets, so it can be attached to a CI run as is.
"""

from __future__ import annotations

import html
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsmerge_contracts.checks import FAIL, PASS, REGISTRY, WARN, Result
from opsmerge_contracts.cleanup import Leftover
from opsmerge_contracts.exchange import Exchange

NO_OPERATION = "(outside the spec)"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


@dataclass(slots=True)
class TestOutcome:
    nodeid: str
    outcome: str  # passed | failed | skipped | error
    duration: float
    reason: str = ""


@dataclass(slots=True)
class RunReport:
    meta: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    matrix: dict[str, dict[str, str]] = field(default_factory=dict)  # operation -> check -> status
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # check -> status -> n
    failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    tests: list[TestOutcome] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    # role-matrix expectations the run could not prove (a write under production, say): stated,
    # never counted as passed
    unproven: list[dict[str, Any]] = field(default_factory=list)

    def add_unproven(self, entry: dict[str, Any]) -> None:
        self.unproven.append(entry)

    def add_results(
        self, nodeid: str, results: list[Result], curl: Callable[[Exchange], str]
    ) -> None:
        seen_warnings: set[tuple[str, str | None]] = {
            (w["test"], w["operation"]) for w in self.warnings
        }
        for r in results:
            op = r.operation_id or NO_OPERATION
            row = self.matrix.setdefault(op, {})
            current = row.get(r.check)
            if current is None or _RANK[r.status] > _RANK[current]:
                row[r.check] = r.status
            tally = self.counts.setdefault(r.check, {PASS: 0, FAIL: 0, WARN: 0})
            tally[r.status] += 1
            if r.status == FAIL:
                self.failures.append(
                    {
                        "test": nodeid,
                        "check": r.check,
                        "title": REGISTRY[r.check].title if r.check in REGISTRY else r.check,
                        "operation": r.operation_id,
                        "message": r.message,
                        "exchange": r.exchange.to_dict(),
                        "curl": curl(r.exchange),
                    }
                )
            elif r.status == WARN and (nodeid, r.operation_id) not in seen_warnings:
                seen_warnings.add((nodeid, r.operation_id))
                self.warnings.append(
                    {
                        "test": nodeid,
                        "check": r.check,
                        "operation": r.operation_id,
                        "message": r.message,
                    }
                )

    def add_test(self, outcome: TestOutcome) -> None:
        self.tests.append(outcome)

    @property
    def failed_checks(self) -> set[str]:
        return {f["check"] for f in self.failures}

    def to_dict(self) -> dict[str, Any]:
        outcomes: dict[str, int] = {}
        for t in self.tests:
            outcomes[t.outcome] = outcomes.get(t.outcome, 0) + 1
        finished = self.finished or time.time()
        return {
            "meta": self.meta,
            "started": _iso(self.started),
            "duration_seconds": round(finished - self.started, 3),
            "summary": {
                "tests": outcomes,
                "checks": self.counts,
                "failed_checks": sorted(self.failed_checks),
                "operations": len([op for op in self.matrix if op != NO_OPERATION]),
            },
            "stats": self.stats,
            "checks": {cid: {"title": c.title, "group": c.group} for cid, c in REGISTRY.items()},
            "operations": self.matrix,
            "failures": self.failures,
            "warnings": self.warnings,
            "leftovers": [left.to_dict() for left in self.leftovers],
            "unproven": self.unproven,
            "skipped": [
                {"test": t.nodeid, "reason": t.reason} for t in self.tests if t.outcome == "skipped"
            ],
            "tests": [
                {"test": t.nodeid, "outcome": t.outcome, "duration": round(t.duration, 4)}
                for t in self.tests
            ],
        }

    def write(self, path: Path) -> tuple[Path, Path]:
        """Write PATH as .json and .html (whichever suffix PATH has, the other is its sibling)."""
        path = Path(path)
        base = path.with_suffix("") if path.suffix in (".json", ".html", ".htm") else path
        json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        html_path.write_text(render_html(data), encoding="utf-8")
        return json_path, html_path

    @property
    def has_findings(self) -> bool:
        """Whether there is anything to summarise: checks ran, or something was left behind or
        could not be proven. A run of a user's own tests that only used the fixtures has none."""
        return bool(self.counts or self.leftovers or self.unproven or self.failures)

    def render_summary(self, width: int = 120, color: bool = False, verbose: bool = False) -> str:
        """The end-of-run summary as text (rendered with rich): checks, then operations by check
        group (every operation when `verbose`, else those that failed or warned). Nothing in it
        is wider than `width`: long names fold instead of being cut."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        console = Console(
            width=width,
            force_terminal=color,
            color_system="standard" if color else None,
            record=True,
            file=io.StringIO(),  # recorded, never printed here
        )
        if self.counts:
            checks = Table(title="checks", title_justify="left", box=box.SIMPLE_HEAD)
            checks.add_column("check", overflow="fold")
            checks.add_column("passed", justify="right")
            checks.add_column("failed", justify="right")
            checks.add_column("warned", justify="right")
            for cid in REGISTRY:
                tally = self.counts.get(cid)
                if not tally:
                    continue
                style = "red" if tally[FAIL] else "green"
                checks.add_row(
                    f"[{style}]{cid}[/]", str(tally[PASS]), str(tally[FAIL]), str(tally[WARN])
                )
            console.print(checks)
        groups = list(dict.fromkeys(info.group for info in REGISTRY.values()))
        ops = Table(
            title="operations by check group (✓ passed, ✗ failed, ! warned)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            collapse_padding=True,
        )
        ops.add_column("operation", overflow="fold", ratio=1)
        for group in groups:
            ops.add_column(_SHORT.get(group, group)[:4], justify="center", no_wrap=True, width=4)
        quiet = 0
        for op in sorted(self.matrix):
            row = self.matrix[op]
            by_group: dict[str, str] = {}
            for cid, status in row.items():
                group = REGISTRY[cid].group if cid in REGISTRY else "other"
                if _RANK[status] >= _RANK.get(by_group.get(group, PASS), 0):
                    by_group[group] = status
            if not verbose and all(s == PASS for s in by_group.values()):
                quiet += 1
                continue
            ops.add_row(op, *(_CELL.get(by_group.get(g, ""), "") for g in groups))
        if ops.row_count:
            console.print(ops)
        if quiet:
            console.print(f"{quiet} operation(s) passed every check that applied (-v lists them).")
        outcomes = self.to_dict()["summary"]["tests"]
        line = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "no contract tests"
        console.print(
            f"contracts: {line}; {len(self.failures)} failing exchange(s); "
            f"{self.stats.get('requests', 0)} request(s) sent"
        )
        if self.unproven:
            by_reason: dict[str, set[str]] = {}
            for entry in self.unproven:
                by_reason.setdefault(entry["reason"], set()).add(entry["operation"])
            for reason, operations in by_reason.items():
                count = sum(1 for e in self.unproven if e["reason"] == reason)
                console.print(
                    f"[yellow]role matrix, not proven[/]: {count} expectation(s) on "
                    f"{len(operations)} operation(s): {reason} (the report lists them)"
                )
        skipped = self.meta.get("replay_skipped") or []
        if skipped:
            console.print(
                f"[yellow]replay, not sent[/]: {len(skipped)} recorded entr"
                f"{'y' if len(skipped) == 1 else 'ies'} (the report lists them)"
            )
        if self.leftovers:
            left_by: dict[str, dict[str, int]] = {}
            for left in self.leftovers:
                tally = left_by.setdefault(left.reason, {})
                tally[left.collection] = tally.get(left.collection, 0) + 1
            for reason, tally in left_by.items():
                listed = ", ".join(f"{n} {c}" for c, n in sorted(tally.items()))
                console.print(f"[yellow]leftovers[/]: {listed} ({reason})")
        return console.export_text(styles=color)


_SHORT = {
    "response": "resp",
    "envelope": "env",
    "pagination": "page",
    "rate-limit": "rate",
    "stability": "stab",
    "bodies": "body",
    "resources": "ids",
    "scenario": "scen",
}
_CELL = {PASS: "[green]✓[/]", FAIL: "[red]✗[/]", WARN: "[yellow]![/]"}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2330;background:#fafbfc;
max-width:100%}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;background:#fff}
th,td{border:1px solid #d7dce3;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5}.pass{color:#137333}.fail{color:#b3261e;font-weight:600}.warn{color:#9a6700}
td.c{text-align:center;padding:.2rem 0;min-width:1.3rem}pre{background:#f3f5f8;padding:.6rem;
overflow:auto;white-space:pre-wrap;word-break:break-all;max-height:24rem}
details{margin:.6rem 0;border:1px solid #d7dce3;background:#fff;
padding:.4rem .8rem}summary{cursor:pointer}.meta td:first-child{font-weight:600}
.meta td{overflow-wrap:anywhere}
table.matrix th.v{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;
padding:.4rem .1rem;font-weight:500;font-size:.8rem;vertical-align:bottom;text-align:left}
table.matrix th.g{text-align:center;font-size:.72rem;font-weight:600;padding:.25rem .1rem}
table.matrix td.op{white-space:nowrap;font-family:ui-monospace,monospace;font-size:.8rem}
.empty{color:#5f6b7a}
"""
_SYMBOL = {PASS: "✓", FAIL: "✗", WARN: "!"}
_SYMBOL_TITLE = {PASS: "passed", FAIL: "failed", WARN: "warned"}


def _pretty(body: str) -> str:
    """A JSON body indented for reading; anything else (or a truncated body) as it came."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def _meta_value(value: Any) -> str:
    """A run setting as a person reads it: no Python literals (None, True) on the page."""
    if value is None:
        return "not set"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def _matrix(data: dict[str, Any]) -> str:
    """Operations by checks: the checks grouped under their group, their ids written upwards so
    thirty-odd columns fit a laptop's window without scrolling sideways."""
    e = html.escape
    checks = data["checks"]
    check_ids = [cid for cid in checks if cid in data["summary"]["checks"]]
    if not check_ids or not data["operations"]:
        return '<p class="empty">No operation was checked.</p>'
    groups: dict[str, list[str]] = {}
    for cid in check_ids:
        groups.setdefault(checks[cid]["group"], []).append(cid)
    ordered = [cid for ids in groups.values() for cid in ids]
    group_row = "".join(
        f'<th class="g" colspan="{len(ids)}">{e(group)}</th>' for group, ids in groups.items()
    )
    head = "".join(
        f'<th class="v" title="{e(checks[c]["title"])}">{e(c)}</th>' for c in ordered
    )
    rows = []
    for op in sorted(data["operations"]):
        cells = []
        for cid in ordered:
            status = data["operations"][op].get(cid)
            title = f' title="{e(cid)}: {_SYMBOL_TITLE[status]}"' if status else ""
            symbol = _SYMBOL.get(status or "", "")
            cells.append(f'<td class="c {status or ""}"{title}>{symbol}</td>')
        rows.append(f'<tr><td class="op">{e(op)}</td>{"".join(cells)}</tr>')
    return (
        '<table class="matrix"><thead><tr><th rowspan="2">operation</th>'
        f"{group_row}</tr><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _list(items: list[str], empty: str) -> str:
    return f"<ul>{''.join(items)}</ul>" if items else f'<p class="empty">{empty}</p>'


def render_html(data: dict[str, Any]) -> str:
    e = html.escape
    meta_rows = "".join(
        f"<tr><td>{e(str(k))}</td><td>{e(_meta_value(v))}</td></tr>"
        for k, v in data["meta"].items()
    )
    tests = data["summary"]["tests"]
    outcome = ", ".join(f"{n} {e(k)}" for k, n in sorted(tests.items())) or "no tests"
    failures = []
    for i, f in enumerate(data["failures"], 1):
        ex = f["exchange"]
        req, resp = ex["request"], ex["response"]
        req_text = f"{req['method']} {req['url']}\n" + "\n".join(
            f"{k}: {v}" for k, v in req["headers"].items()
        )
        if req["body"]:
            req_text += "\n\n" + _pretty(req["body"])
        resp_text = f"{resp['status']}\n" + "\n".join(
            f"{k}: {v}" for k, v in resp["headers"].items()
        )
        if resp["body"]:
            resp_text += "\n\n" + _pretty(resp["body"])
        failures.append(
            f"<details{' open' if i <= 3 else ''}><summary><span class=fail>{e(f['check'])}</span> "
            f"{e(f['operation'] or '')}: {e(f['message'])}</summary>"
            f"<p>test <code>{e(f['test'])}</code></p>"
            f"<p>reproduce:</p><pre>{e(f['curl'])}</pre>"
            f"<p>request</p><pre>{e(req_text)}</pre><p>response</p><pre>{e(resp_text)}</pre></details>"
        )
    warnings = [
        f"<li class=warn>{e(w['operation'] or '')}: {e(w['message'])} "
        f"<small>({e(w['test'])})</small></li>"
        for w in data["warnings"]
    ]
    unproven = [
        f"<li>{e(u['operation'])}: key <code>{e(u['key'])}</code> ({e(u['roles'] or 'no role')})"
        f" expected {e(u['expected'])}; {e(u['reason'])}</li>"
        for u in data.get("unproven", [])
    ]
    leftovers = [
        f"<li>{e(x['collection'])} <code>{e(x['id'])}</code>: {e(x['reason'])}</li>"
        for x in data["leftovers"]
    ]
    skipped = [f"<li><code>{e(s['test'])}</code>: {e(s['reason'])}</li>" for s in data["skipped"]]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpsMerge contract report</title>
<style>{_CSS}</style></head><body>
<h1>OpsMerge contract report</h1>
<p>{outcome}; {len(data["failures"])} failing exchange(s); started {e(data["started"])},
took {data["duration_seconds"]} s.</p>
<table class=meta>{meta_rows}</table>
<h2>Failures ({len(data["failures"])})</h2>{"".join(failures) or '<p class="pass">No failures.</p>'}
<h2>Operations by checks</h2>
{_matrix(data)}
<h2>Not proven ({len(unproven)})</h2>{_list(unproven, "Every role-matrix expectation was sent.")}
<h2>Warnings ({len(warnings)})</h2>{_list(warnings, "No warnings.")}
<h2>Leftovers ({len(leftovers)})</h2>{_list(leftovers, "Nothing was left behind.")}
<h2>Skipped ({len(skipped)})</h2>{_list(skipped, "Nothing was skipped.")}
</body></html>
"""
