"""The README and docs/ name files that exist: every relative link resolves, and every repository path
written in backticks or on a command line is there (a user who copies it finds it)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TOP_DIRS = ("attn_dqn_controller", "sim", "bench", "config", "launch", "models", "maps", "docs", "tests",
            "ros2_ws", "resource", ".ci")
# Paths a reader makes or names for themselves, not files of the repository.
PLACEHOLDER = re.compile(r"(my_|NAME|CHECKPOINT|\*|<|\{|\.\.\.|[A-Z]\.pt)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PATH = re.compile(r"(?<![\w./$-])((?:%s)/[\w./-]*[\w-])" % "|".join(re.escape(d) for d in TOP_DIRS))


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page):
    text = page.read_text()
    missing = [target for target in LINK.findall(text)
               if "://" not in target and not (page.parent / target).exists()]
    assert not missing, f"{_page_id(page)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_repository_paths_named_exist(page):
    text = page.read_text()
    missing = sorted({path for path in PATH.findall(text)
                      if not PLACEHOLDER.search(path) and not (REPO / path).exists()})
    assert not missing, f"{_page_id(page)} names paths that do not exist: {missing}"


def test_the_path_check_sees_a_missing_file(tmp_path):
    """The pattern finds paths in prose, code spans and command lines, so a renamed file cannot slip by."""
    text = "run `bench/route_table.py`, then models/attn_dqn_route.pt and docs/nothing_here.md (see config/x.yaml)"
    found = PATH.findall(text)
    assert found == ["bench/route_table.py", "models/attn_dqn_route.pt", "docs/nothing_here.md", "config/x.yaml"]
    assert [p for p in found if not (REPO / p).exists()] == ["docs/nothing_here.md", "config/x.yaml"]


def test_readme_is_a_front_page():
    """The README stays a user's front page: the detail lives in docs/."""
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 16_000, "README.md has grown past a front page: move the detail into docs/"
    for command in ("make demo", "make test"):
        assert command in text
