"""The README's command list is generated from the argparse parser, so it cannot fall behind.

The list under "The command" sits between two markers and is exactly what `render_commands`
makes of `build_parser()` (the `contracts` subcommand included): every subcommand, and for each
every option with its help text. When an option is added or its help changes, the first test
fails and says how to rewrite the list:

    .venv/bin/python -m tests.test_cli_readme_commands
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from opsmerge_sandbox.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- commands: generated from the parser by `python -m tests.test_cli_readme_commands` -->"
END = "<!-- end of commands -->"
PROG = "opsmerge-sandbox"


def leaf_commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """(words after the program name, the command's help, its parser), for every runnable one."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
            if nested:
                yield from leaf_commands(sub, (*words, name))
            else:
                yield (*words, name), helps.get(name, ""), sub


def documented_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The options and arguments a user can give (not --help, not the hidden ones)."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        yield action


def invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """How the option is written: `--port PORT`, `--http {auto,h11}`, `[PATH]`, `PYTEST_ARGS...`."""
    if action.option_strings:
        return parser._get_formatter()._format_action_invocation(action)
    name = str(action.metavar or action.dest).upper()
    if action.nargs == argparse.OPTIONAL:
        return f"[{name}]"
    if action.nargs in (argparse.REMAINDER, argparse.ZERO_OR_MORE, argparse.ONE_OR_MORE):
        return f"{name}..."
    return name


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The option's help as `--help` shows it (`%(default)s` filled in), on one line."""
    expanded = parser._get_formatter()._expand_help(action)
    return " ".join(expanded.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_commands(parser: argparse.ArgumentParser) -> str:
    """The README's command list: per command, a table of its options and their help."""
    parts: list[str] = []
    for words, about, sub in leaf_commands(parser):
        rows = [
            f"| `{invocation(sub, a)}` | {_cell(help_text(sub, a))} |"
            for a in documented_actions(sub)
        ]
        table = ["| option | what it does |", "|---|---|", *rows] if rows else ["No options."]
        parts.append("\n".join([f"**`{PROG} {' '.join(words)}`**: {about}", "", *table]))
    return "\n\n".join(parts)


def readme_block(text: str) -> str:
    """What the README holds between the markers."""
    assert BEGIN in text and END in text, f"README.md lacks the markers {BEGIN!r} ... {END!r}"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def rewrite_readme() -> bool:
    """Put the generated list between the markers; True when the README changed."""
    text = README.read_text()
    old = readme_block(text)
    new = render_commands(build_parser())
    if old == new:
        return False
    head, rest = text.split(BEGIN, 1)
    README.write_text(f"{head}{BEGIN}\n{new}\n{END}{rest.split(END, 1)[1]}")
    return True


def _command_sections(block: str) -> dict[str, str]:
    """The README block split per command, keyed by the command's words."""
    found = re.split(rf"^\*\*`{PROG} ([^`]+)`\*\*", block, flags=re.MULTILINE)
    return dict(zip(found[1::2], found[2::2], strict=True))


def test_the_readme_command_list_is_the_one_the_parser_generates() -> None:
    block = readme_block(README.read_text())
    assert block == render_commands(build_parser()), (
        "README.md's command list is out of date: run "
        "`.venv/bin/python -m tests.test_cli_readme_commands` and commit the result"
    )


def test_every_option_of_every_subcommand_is_in_the_readme_with_its_help() -> None:
    parser = build_parser()
    sections = _command_sections(readme_block(README.read_text()))
    missing = []
    commands = list(leaf_commands(parser))
    assert {" ".join(w) for w, _, _ in commands} >= {"serve", "keys", "contracts", "spec check"}
    for words, about, sub in commands:
        section = sections.get(" ".join(words))
        if section is None:
            missing.append(f"{PROG} {' '.join(words)}: the command itself")
            continue
        assert about and about in section.splitlines()[0], words
        for action in documented_actions(sub):
            assert action.help, f"{' '.join(words)} {action.dest} has no help text"
            row = f"| `{invocation(sub, action)}` | {_cell(help_text(sub, action))} |"
            if row not in section.splitlines():
                missing.append(f"{PROG} {' '.join(words)} {invocation(sub, action)}")
    assert missing == []


if __name__ == "__main__":
    changed = rewrite_readme()
    print("README.md command list " + ("rewritten" if changed else "already up to date"))
    sys.exit(0)
