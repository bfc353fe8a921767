"""Every example of the documentation (README.md and docs/*.md) runs as written, and every relative
link points at something.

A page's examples run as one script in an empty folder, as a reader would run them one after the
other: its ```python blocks in order and, in their place, its ```bash blocks (through bash, with this
environment's ``tcube`` on the PATH). ```console blocks show commands that need the reader's own data
(or hours) and are not run; the text next to them says so. The README's first block (install, then
the tests) is what ``.ci/run`` runs; here it is only checked to be there, word for word.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
#: The README's two commands, which .ci/run runs verbatim.
SETUP = ('pip install torch==2.13.0 && pip install -e ".[dev]" && tcube demo   # install, then compress the shipped '
         'sample cube\n'
         'python -m pytest -m "not slow"                                       # run the tests (a few minutes)\n')
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
RUN = ("python", "bash")


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language, code, line) of each fenced block of ``page``; the README's setup block left out."""
    text = page.read_text()
    found = [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]
    return [b for b in found if not (page == README and b[1] == SETUP)]


def script(page: Path) -> str:
    """The page's python blocks, and its bash blocks run through bash, in order, as one script.
    bash blocks run under a main guard, like the dask example's own code, so that worker processes
    that import the script again run neither."""
    parts = []
    for lang, code, line in blocks(page):
        parts.append(f"# ---- {name(page)}, line {line}: {lang} ----\n")
        if lang == "python":
            parts.append(code)
        elif lang == "bash":
            command = "set -euo pipefail\n" + code
            parts.append('if __name__ == "__main__":\n'
                         f'    __import__("subprocess").run({command!r}, shell=True, check=True,\n'
                         '                                 executable="/bin/bash")\n')
    return "".join(parts)


def runnable(page: Path) -> bool:
    return any(lang in RUN for lang, _, _ in blocks(page))


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M)}


def test_the_pages_are_there():
    assert len(PAGES) >= 10
    assert len(README.read_text().splitlines()) < 250, "the README stays short: details go to docs/"


def test_readme_keeps_the_ci_commands_verbatim():
    text = README.read_text()
    assert text.index("```bash\n" + SETUP + "```\n") < text.index("## "), "first, before any section"
    ci = (ROOT / ".ci" / "run").read_text()
    for line in SETUP.splitlines():
        assert line.split("   #")[0].strip() in ci


def test_every_page_is_listed():
    for index in (README, DOCS / "index.md"):
        linked = {(index.parent / target).resolve() for target in LINK.findall(index.read_text())}
        missing = [name(p) for p in PAGES if p not in (README, index) and p.resolve() not in linked]
        assert not missing, f"{name(index)} does not link to {missing}"


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_examples_compile(page):
    code = script(page)
    compile(code, name(page), "exec")
    for lang, block, line in blocks(page):
        assert lang in (*RUN, "console", ""), f"{name(page)}, line {line}: ```{lang}: neither run nor shown-only"
        if lang == "bash":
            check = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
            assert check.returncode == 0, f"{name(page)}, line {line}: {check.stderr}"


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_resolve(page):
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # links shown as code are not links
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            bad.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            bad.append(f"{target}: no such heading")
    assert not bad, f"{name(page)}: {bad}"


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=name)
def test_examples_run(page, tmp_path):
    code = script(page)
    if "tcube.parallel" in code:
        pytest.importorskip("distributed")
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, f"{name(page)} (script: {tmp_path / 'example.py'}):\n{run.stderr[-4000:]}"
