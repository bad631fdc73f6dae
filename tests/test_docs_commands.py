"""Every `python -m pipelines` command in the README and docs/ parses, names configs that exist, and loads.

Documentation goes stale silently: a renamed flag, a moved config or a dropped key. This reads each shell
block of the pages, expands the variables a block sets (`V="--set …"`), and runs every pipelines command
through the real argument parser and, where it has a config, through `load_config` with its overrides.
The end-to-end tests run the same kinds of commands with tiny step counts; this keeps the pages' spelling of
them honest.
"""

from __future__ import annotations

import re
import shlex

import pytest

from pipelines.cli import build_parser
from pipelines.config import load_config
from pipelines.data.fetch import DATASETS
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
ASSIGNMENT = re.compile(r'^([A-Z]+)="([^"]*)"$')


def shell_lines(text: str) -> list[str]:
    """The logical lines of a page's bash blocks, continuations joined and each block's variables expanded."""
    lines = []
    for block in BLOCK.findall(text):
        variables: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if match := ASSIGNMENT.match(line):
                variables[match[1]] = " ".join(match[2].split())
                continue
            for name, value in variables.items():
                line = line.replace(f"${name}", value)
            lines.append(line)
    return lines


def pipelines_commands(text: str) -> list[list[str]]:
    """The argument lists after `-m pipelines` (direct, or under `accelerate launch`)."""
    commands = []
    for line in shell_lines(text):
        words = shlex.split(line, comments=True)
        for i in range(len(words) - 1):
            if words[i] == "-m" and words[i + 1] == "pipelines":
                commands.append(words[i + 2 :])
                break
    return commands


COMMANDS = [(page.relative_to(REPO).as_posix(), argv) for page in PAGES
            for argv in pipelines_commands(page.read_text())]  # fmt: skip


def test_the_pages_hold_the_commands_they_are_meant_to():
    names = {argv[0] for _, argv in COMMANDS}
    assert {"quickstart", "fetch-data", "pretrain", "finetune", "generate", "evaluate", "compare"} <= names
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("page", "argv"), COMMANDS, ids=[f"{p}:{' '.join(a)[:60]}" for p, a in COMMANDS])
def test_documented_command_parses_and_its_config_loads(page, argv, monkeypatch):
    monkeypatch.chdir(REPO)  # the pages' paths are relative to the repository
    args = build_parser().parse_args(argv)  # a stale flag exits here (SystemExit 2)
    for word in argv:
        if re.fullmatch(r"configs/\S+\.yaml", word):
            assert (REPO / word).is_file(), f"{page} names {word}, which does not exist"
    if args.command == "fetch-data":
        assert set(args.names) <= set(DATASETS)
    if getattr(args, "config", None) or args.command in ("pretrain", "finetune", "prepare", "train-tokenizer"):
        load_config(args.config, args.overrides)  # unknown keys, bad values and bad --set items raise


def test_shell_lines_join_continuations_and_expand_block_variables():
    page = '```bash\nS="--set a=1 \\\n   --set b=2"\npython -m pipelines pretrain $S \\\n  --set c=3  # note\n```\n'
    assert pipelines_commands(page) == [["pretrain", "--set", "a=1", "--set", "b=2", "--set", "c=3"]]
