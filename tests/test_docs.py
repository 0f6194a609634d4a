"""The documentation holds: every relative link in README.md and docs/*.md resolves (the file,
and the heading when the link names one), every repository path a page names exists inside the
repository, and every `python -m momentum_ssl` command in the code blocks parses, so a reader
who copies one gets the stage's help, not a usage error."""

import os
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def code(text: str) -> list[str]:
    """The lines inside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()):
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links() -> list[tuple[Path, str]]:
    out = []
    for page in PAGES:
        # the prose as one text: a link's words may wrap onto the next line
        for target in LINK.findall("\n".join(prose(page.read_text()))):
            if not re.match(r"[a-z]+:", target):  # http:, https:, mailto: are not ours
                out.append((page, target))
    return out


def test_the_pages_link_to_each_other():
    assert len(PAGES) >= 10
    targets = {(page.name, target) for page, target in links()}
    assert ("README.md", "docs/CONFIGURATION.md") in targets
    assert ("README.md", "docs/STATISTICS.md") in targets


@pytest.mark.parametrize("page, target", links(),
                         ids=lambda x: x.name if isinstance(x, Path) else x)
def test_every_relative_link_resolves(page, target):
    file, _, anchor = target.partition("#")
    path = (page.parent / file).resolve() if file else page
    assert path.exists(), f"{page.name}: {target}: no file {path}"
    assert path.is_relative_to(REPO), f"{page.name}: {target} points outside the repository"
    if anchor:
        assert path.suffix == ".md", f"{page.name}: {target}: an anchor into a non-page"
        assert anchor in anchors(path), (
            f"{page.name}: {target}: no heading '#{anchor}' in {path.name}; "
            f"it has {sorted(anchors(path))}")


def test_slug_follows_githubs_rules():
    assert slug("Pretraining: `pretrain --run NAME`") == "pretraining-pretrain---run-name"
    assert slug("Several GPUs for one run: torchrun") == "several-gpus-for-one-run-torchrun"
    assert slug("What it does that SSL libraries leave to you") == \
        "what-it-does-that-ssl-libraries-leave-to-you"


def commands(page: Path) -> list[list[str]]:
    """The argument lists of the `python -m momentum_ssl` commands in a page's code blocks
    (a `$ ` prompt and a trailing `# comment` left out; lines with placeholders skipped)."""
    out = []
    for line in code(page.read_text()):
        line = line.strip().removeprefix("$ ")
        if not line.startswith("python -m momentum_ssl"):
            continue
        words = shlex.split(line, comments=True)
        if any("<" in w or "..." in w for w in words):
            continue
        out.append(words[3:])
    return out


README_COMMANDS = commands(REPO / "README.md")
DOCS_COMMANDS = [c for page in PAGES[1:] for c in commands(page)]


def test_the_readme_shows_stage_commands():
    stages = {argv[0] for argv in README_COMMANDS if argv}
    assert {"convert", "pretrain", "evaluate", "report", "params"} <= stages


@pytest.mark.parametrize("argv", README_COMMANDS, ids=" ".join)
def test_every_readme_command_parses_with_help(argv, monkeypatch, capsys):
    """`python -m momentum_ssl <argv> --help` exits 0 (run in-process through runpy, as
    `python -m` runs the package's __main__). __main__ sets the params' compute variables in
    os.environ; they are put back after the test, or a later test's subprocesses (a native,
    unpinned run of tests/plumbing/test_compute.py) would inherit the portable pins."""
    monkeypatch.setattr(os, "environ", dict(os.environ))  # a copy for __main__ to write into
    monkeypatch.setattr(sys, "argv", ["momentum_ssl", *argv, "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("momentum_ssl", run_name="__main__", alter_sys=True)
    assert done.value.code in (0, None), capsys.readouterr().err
    assert "usage: python -m momentum_ssl" in capsys.readouterr().out


@pytest.mark.parametrize("argv", README_COMMANDS + DOCS_COMMANDS, ids=" ".join)
def test_every_documented_command_parses_without_help(argv):
    """--help stops argparse before it would reject an unknown option after it; without it,
    every documented command's options must be the command's own."""
    from momentum_ssl.cli import build_parser

    if argv in ([], ["--help"]):
        return
    args = build_parser().parse_args(argv)
    assert args.stage == argv[0]


# A repository path in a page, in prose or code, in backticks or not: a top-level folder of the
# repository, the package (momentum_ssl/...py, or a module of one of its layers, stages/x.py),
# or a relative path that climbs out of the page's folder (../...). A path with a placeholder
# (<run>, {a,b}) is a pattern, not a path; * is a glob.
TOP = r"(?:src|tests|bench|params|workflow|docs|studies)/[\w.*/-]*"
PACKAGE = r"momentum_ssl/[\w/]+\.py|(?:config|core|data|stages|analysis|plumbing)/[\w/]+\.py"
UP = r"(?:\.\./)+[\w.*/-]+"
REPO_PATH = re.compile(rf"(?<![\w./<{{-])({TOP}|{PACKAGE}|{UP})(?![\w/<{{])")


def named_paths() -> list[tuple[str, str]]:
    return sorted({(page.name, path.rstrip(".,:;")) for page in PAGES
                   for path in REPO_PATH.findall(page.read_text())})


def resolves(page: str, path: str) -> bool:
    """Whether ``path``, named in ``page``, is a file or folder of the repository."""
    if path.startswith("../"):  # relative to the page's folder, or to a study's folder (a
        # command shown after `cd studies/NAME`), and it must stay inside
        bases = [REPO / "docs" if page != "README.md" else REPO, REPO / "studies" / "claims"]
        return any((base / path).resolve().is_relative_to(REPO.resolve())
                   and (base / path).resolve().exists() for base in bases)
    study = re.match(r"studies/([\w.-]+)", path)
    if study and (REPO / "params" / f"{study.group(1)}.yaml").is_file():
        return True  # what `python -m momentum_ssl study NAME` makes from params/NAME.yaml
    if path.startswith("momentum_ssl/"):
        path = f"src/{path}"
    elif not path.startswith(("src/", "tests/", "bench/", "params/", "workflow/", "docs/",
                              "studies/")):
        path = f"src/momentum_ssl/{path}"  # a module of a layer: stages/pretrain.py
    return bool(list(REPO.glob(path.rstrip("/"))))


def test_the_path_finder_sees_what_a_page_may_name():
    found = REPO_PATH.findall("see `momentum_ssl/gpus.py`, stages/pretrain.py and tests/x.py; "
                              "(`../shared/docs/METHODS.md`), results/runs/<run>/, "
                              "solo/data/x.py, src/momentum_ssl/{a,b}.py")
    assert found == ["momentum_ssl/gpus.py", "stages/pretrain.py", "tests/x.py",
                     "../shared/docs/METHODS.md"]
    assert not resolves("RECIPES.md", "../shared/docs/METHODS.md")  # outside the repository
    assert not resolves("CLUSTER.md", "momentum_ssl/gpus.py")
    assert resolves("CLUSTER.md", "plumbing/devices.py")
    assert resolves("TESTING.md", "../tests/test_docs.py")


@pytest.mark.parametrize("page, path", named_paths())
def test_every_repository_path_a_page_names_exists(page, path):
    """`src/...`, `tests/...`, `bench/...`, `momentum_ssl/...py` in a page, in prose or code: a
    file moved or renamed leaves the page naming nothing, and a path out of the repository
    names a file a user does not have."""
    assert resolves(page, path), f"{page} names {path}, not in the repository"
