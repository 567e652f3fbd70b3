"""The docs cannot drift: every ``sbdeploy`` command shown in README.md and docs/*.md parses with the real CLI.

Commands are taken from shell code blocks (``bash``, ``sh``, ``console`` or unlabelled fences; continuation
lines joined, ``#`` comments dropped, ``&&`` chains split) and from inline code spans that start with
``sbdeploy`` or a path ending in it (``.venv/bin/sbdeploy``). Each is parsed by the typer app's click
command, options, values and required arguments included, without running it; a span naming a
command alone (``sbdeploy pipeline``) must name a registered command. The cheap ones also run here.
Every relative link must point to a file (and heading) that exists, and the README stays short.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from sbdeploy.cli.main import app, main

try:  # typer 0.2x carries its own copy of click, as sbdeploy.cli.main says
    from typer._click import exceptions as click_errors
except ImportError:
    from click import exceptions as click_errors  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
README_MAX_LINES = 250

SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*```\s*(\S*)")
INLINE_CODE = re.compile(r"`([^`]+)`")
INLINE_COMMAND = re.compile(r"^(?:\S*/)?sbdeploy(?:\s|$)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")

# Input files that click itself checks for existence when it parses (`build-engine`'s ONNX file and
# `--calibration`). The docs make them with a command shown earlier (`sbdeploy export ... -o
# engines/r20sb.onnx`) or ask the user for them (`inputs.npy`); the parse test creates them empty.
FILES_MADE_EARLIER = ("engines/r20sb.onnx", "inputs.npy")

# Commands shown in the docs that are cheap enough to run here, in this order (the export makes the
# file the check reads). Each must still be shown in the docs, word for word.
RUN_HERE = (
    "sbdeploy --version",
    "sbdeploy --help",
    "sbdeploy doctor",
    "sbdeploy doctor --json",
    "sbdeploy zoo --json",
    "sbdeploy zoo 'resnet*'",
    "sbdeploy export models/digits_resnet20_sb -o engines/r20sb.onnx",
    "sbdeploy check engines/r20sb.onnx",
)


@dataclass(frozen=True)
class DocCommand:
    """One ``sbdeploy`` command line shown in a doc: where, as written, and its arguments after ``sbdeploy``."""

    doc: Path
    line: int
    text: str
    args: tuple[str, ...]
    inline: bool

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def _blank_code_blocks(text: str) -> tuple[str, list[tuple[int, str, list[str]]]]:
    """The text with fenced blocks blanked (line numbers kept), and each block: (first line, language, lines)."""
    out: list[str] = []
    blocks: list[tuple[int, str, list[str]]] = []
    current: tuple[int, str, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if current is None and fence:
            current = (number + 1, fence.group(1).lower(), [])
        elif current is not None and fence:
            blocks.append(current)
            current = None
        elif current is not None:
            current[2].append(line)
        out.append("" if current is not None or fence else line)
    assert current is None, f"unclosed code fence opened at line {current[0] - 1}"
    return "\n".join(out), blocks


def _shell_commands(line: str) -> list[list[str]]:
    """The argument lists after each ``sbdeploy`` (or ``.../sbdeploy``) word of one shell line."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    commands = []
    for i, token in enumerate(tokens):
        if token == "sbdeploy" or token.endswith("/sbdeploy"):
            args = []
            for arg in tokens[i + 1 :]:
                if arg and set(arg) <= set("();<>|&"):
                    break
                args.append(arg)
            commands.append(args)
    return commands


def doc_commands(doc: Path) -> list[DocCommand]:
    """Every ``sbdeploy`` command shown in one Markdown file, in order of appearance."""
    prose, blocks = _blank_code_blocks(doc.read_text(encoding="utf-8"))
    found = []
    for first_line, language, lines in blocks:
        if language not in SHELL_FENCES:
            continue
        joined, start = "", first_line
        for number, line in enumerate(lines, start=first_line):
            if not joined:
                start = number
            joined += line
            if joined.endswith("\\"):
                joined = joined[:-1] + " "
                continue
            for args in _shell_commands(joined):
                found.append(DocCommand(doc, start, joined.strip(), tuple(args), inline=False))
            joined = ""
    for match in INLINE_CODE.finditer(prose):
        span = " ".join(match.group(1).split())
        if INLINE_COMMAND.match(span):
            line = prose.count("\n", 0, match.start()) + 1
            found.append(DocCommand(doc, line, span, tuple(shlex.split(span)[1:]), inline=True))
    return sorted(found, key=lambda c: c.line)


ALL_COMMANDS = [command for doc in DOCS for command in doc_commands(doc)]


def _parse(args: tuple[str, ...]) -> None:
    """Parse ``sbdeploy ARGS`` with the real click command and its options, without invoking it."""
    group = get_command(app)
    try:
        if args[0].startswith("-"):
            group.make_context("sbdeploy", list(args))
            return
        assert args[0] in group.commands, f"no command {args[0]!r} (the commands: {', '.join(sorted(group.commands))})"
        parent = group.make_context("sbdeploy", [args[0]])
        group.commands[args[0]].make_context(args[0], list(args[1:]), parent=parent)
    except typer.Exit as done:  # --help and --version print and exit (click.exceptions.Exit in older typer)
        assert done.exit_code == 0


def test_the_docs_show_commands() -> None:
    """The extraction finds what the README shows (else every check below would pass on nothing)."""
    readme = [c.args for c in ALL_COMMANDS if c.doc.name == "README.md"]
    main_job = "pipeline models/digits_resnet20_sb --baseline models/digits_resnet20 --out runs/digits"
    assert tuple(main_job.split()) in readme
    assert ("zoo", "resnet*") in readme
    shown = {c.args[0] for c in ALL_COMMANDS if c.args and not c.args[0].startswith("-")}
    assert shown == set(get_command(app).commands), "every command is shown in the docs, and only those"


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: f"{c.where} {c.text[:60]}")
def test_command_parses_with_the_real_cli(command: DocCommand, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not command.args:
        return  # bare `sbdeploy` prints the help
    if command.inline and len(command.args) == 1 and not command.args[0].startswith("-"):
        assert command.args[0] in get_command(app).commands, f"{command.where}: `{command.text}` names no command"
        return
    monkeypatch.chdir(tmp_path)
    for name in FILES_MADE_EARLIER:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    try:
        _parse(command.args)
    except (click_errors.ClickException, AssertionError) as error:
        message = error.format_message() if isinstance(error, click_errors.ClickException) else str(error)
        pytest.fail(f"{command.where}: `{command.text}` does not parse: {message}")


@pytest.mark.slow
def test_cheap_commands_run_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = {c.args for c in ALL_COMMANDS}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(REPO / "models")
    (tmp_path / "engines").mkdir()
    for text in RUN_HERE:
        args = tuple(shlex.split(text)[1:])
        assert args in shown, f"`{text}` is no longer shown in the docs: update RUN_HERE"
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        out, err = capsys.readouterr()
        assert exit_info.value.code in (0, None), f"`{text}` exited {exit_info.value.code}: {err.strip()}"
        if "--json" in args:
            json.loads(out)
    assert (tmp_path / "engines" / "r20sb.onnx").stat().st_size > 0


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    prose, _ = _blank_code_blocks(doc.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for line in prose.splitlines() if (m := HEADING.match(line))}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    prose, _ = _blank_code_blocks(doc.read_text(encoding="utf-8"))
    broken = []
    for match in LINK.finditer(prose):
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        line = prose.count("\n", 0, match.start()) + 1
        if not file.exists():
            broken.append(f"{doc.relative_to(REPO)}:{line}: {target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{doc.relative_to(REPO)}:{line}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_is_short_and_links_every_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    linked = {m.group(1).partition("#")[0] for m in LINK.finditer(readme)}
    unlinked = [p.name for p in DOCS[1:] if f"docs/{p.name}" not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def python_imports() -> list[tuple[str, int, str, str]]:
    """(doc, line, module, name) of every `from sbdeploy... import ...` in a ```python block of README and docs."""
    found = []
    for doc in DOCS:
        in_python = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                in_python = line.strip() == "```python"
                continue
            match = re.match(r"\s*from (sbdeploy[\w.]*) import (.+)", line) if in_python else None
            if match:
                names = [n.strip().split(" as ")[0] for n in match.group(2).strip("()").split(",") if n.strip()]
                found += [(doc.relative_to(REPO).as_posix(), number, match.group(1), n) for n in names]
    return found


@pytest.mark.parametrize(("doc", "line", "module", "name"), python_imports())
def test_python_blocks_import_what_exists(doc: str, line: int, module: str, name: str) -> None:
    import importlib

    imported = importlib.import_module(module)
    assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), f"{doc}:{line}: {module}.{name}"
