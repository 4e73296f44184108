"""Which paths a run leaves out (backdown.filters): the one-expression fast path must answer
exactly what pathspec's gitignore rules answer."""

from __future__ import annotations

import random

import pathspec

from backdown.filters import DEFAULT_EXCLUDES, PathFilter

PATTERNS = [
    "*.tmp", "cache/", "/build", "a/**/b", "docs/*.bak", "**/node_modules", "x?y", "[ab]*.log",
    "Temp*", "\\#hash", "deep/er/", "*~", "/top.txt", "# a comment", "", "spaced name",
]  # fmt: skip
PARTS = ["a", "b", "cache", "build", "docs", "node_modules", "deep", "er", "x1y", "top.txt",
         "f.tmp", "g.bak", "alog.log", "Temporary", "#hash", "e~", "Thumbs.db", "~$doc.docx",
         "spaced name", ".backdown", "ok.txt", "é", "ab.log"]  # fmt: skip


def test_the_one_expression_answers_as_pathspec_does() -> None:
    rng = random.Random(3)
    for _ in range(300):
        chosen = rng.sample(PATTERNS, k=rng.randint(0, 6))
        path_filter = PathFilter(chosen)
        assert path_filter._any is not None, "no '!' pattern: the fast path is taken"
        spec = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_EXCLUDES, *chosen])
        for _ in range(60):
            path = "/".join(rng.choice(PARTS) for _ in range(rng.randint(1, 4)))
            for is_dir in (False, True):
                expected = spec.match_file(path + "/" if is_dir else path)
                assert path_filter.excluded(path, is_dir) == expected, (chosen, path, is_dir)


def test_a_reinclusion_keeps_pathspecs_order() -> None:
    path_filter = PathFilter(["*.log", "!keep.log"])
    assert path_filter._any is None
    assert path_filter.excluded("a/drop.log", False)
    assert not path_filter.excluded("a/keep.log", False)
    assert path_filter.excluded("Thumbs.db", False) and not path_filter.excluded("b.txt", False)
