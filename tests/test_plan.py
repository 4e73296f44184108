"""The planner on its own: trees in, a plan out, no I/O (backdown/plan.py)."""

from __future__ import annotations

import pytest

from backdown.plan import (
    Action,
    CompareRules,
    FileInfo,
    Tree,
    make_plan,
    mirror_refusal,
    need_transfer,
)

T0 = 1_700_000_000.0
DEFAULT = CompareRules()
CHECKSUM = CompareRules(checksum=True)


def tree(*files: FileInfo, dirs: tuple[str, ...] = ()) -> Tree:
    """A Tree of these files and folders, with every parent folder listed as a walk would."""
    t = Tree(files={f.path: f for f in files})
    for path in [*(f.path.rpartition("/")[0] for f in files), *dirs]:
        parts = path.split("/") if path else []
        for depth in range(1, len(parts) + 1):
            t.dirs.add("/".join(parts[:depth]))
    return t


def fi(path: str, size: int = 10, mtime: float = T0, sha: str | None = None) -> FileInfo:
    return FileInfo(path, size, mtime, sha)


def actions(plan_items: list) -> dict[str, Action]:
    return {i.path: i.action for i in plan_items}


# --------------------------------------------------------------------------- make_plan


def test_new_changed_unchanged_and_only_on_destination() -> None:
    src = tree(fi("new.txt"), fi("same.txt"), fi("edited.txt", mtime=T0 + 60), fi("a/b.txt"))
    dst = tree(fi("same.txt"), fi("edited.txt"), fi("gone.txt"), fi("a/b.txt"))
    plan = make_plan(src, dst, DEFAULT)
    assert actions(plan.items) == {
        "new.txt": Action.NEW,
        "same.txt": Action.UNCHANGED,
        "edited.txt": Action.CHANGED,
        "a/b.txt": Action.UNCHANGED,
        "gone.txt": Action.EXTRA,
    }
    assert [i.path for i in plan.copies] == ["edited.txt", "new.txt"]
    assert plan.copy_bytes == 20
    assert plan.count(Action.UNCHANGED) == 2
    assert plan.mkdirs == [] and plan.extra_dirs == []
    new = plan.by_action(Action.NEW)[0]
    assert new.src == fi("new.txt") and new.dst is None
    extra = plan.by_action(Action.EXTRA)[0]
    assert extra.src is None and extra.dst == fi("gone.txt")


def test_empty_trees_make_an_empty_plan() -> None:
    plan = make_plan(Tree(), Tree(), DEFAULT)
    assert plan.items == [] and plan.mkdirs == [] and plan.extra_dirs == []
    assert plan.copies == [] and plan.copy_bytes == 0


def test_everything_new_against_an_empty_destination() -> None:
    src = tree(fi("x/y/z.bin", size=5), fi("top.txt", size=7))
    plan = make_plan(src, Tree(), DEFAULT)
    assert {i.action for i in plan.items} == {Action.NEW}
    assert plan.copy_bytes == 12
    assert plan.mkdirs == ["x", "x/y"]


@pytest.mark.parametrize(
    ("delta", "action"),
    [
        (0.0, Action.UNCHANGED),
        (1.9, Action.UNCHANGED),
        (-1.9, Action.UNCHANGED),
        (2.0, Action.UNCHANGED),  # "more than the window" changes; exactly the window does not
        (2.1, Action.CHANGED),
        (-2.1, Action.CHANGED),
    ],
)
def test_modify_window_default_two_seconds(delta: float, action: Action) -> None:
    plan = make_plan(tree(fi("f", mtime=T0 + delta)), tree(fi("f")), DEFAULT)
    assert actions(plan.items) == {"f": action}


def test_modify_window_can_be_changed() -> None:
    src, dst = tree(fi("f", mtime=T0 + 1.0)), tree(fi("f"))
    assert actions(make_plan(src, dst, CompareRules(modify_window=0.5)).items) == {
        "f": Action.CHANGED
    }
    src = tree(fi("f", mtime=T0 + 5.0))
    assert actions(make_plan(src, dst, CompareRules(modify_window=10)).items) == {
        "f": Action.UNCHANGED
    }


@pytest.mark.parametrize("rules", [DEFAULT, CHECKSUM, CompareRules(modify_window=1e9)])
def test_size_difference_is_always_changed(rules: CompareRules) -> None:
    src = tree(fi("f", size=11, sha="same"))
    dst = tree(fi("f", size=10, sha="same"))
    assert actions(make_plan(src, dst, rules).items) == {"f": Action.CHANGED}


def test_checksum_same_size_and_time_but_other_content_is_changed() -> None:
    src = tree(fi("f", sha="aaaa"))
    dst = tree(fi("f", sha="bbbb"))
    assert actions(make_plan(src, dst, CHECKSUM).items) == {"f": Action.CHANGED}
    # Without --checksum the same pair looks unchanged: that is what --checksum is for.
    assert actions(make_plan(src, dst, DEFAULT).items) == {"f": Action.UNCHANGED}


def test_checksum_same_content_other_time_is_unchanged() -> None:
    src = tree(fi("f", mtime=T0 + 3600, sha="aaaa"))
    dst = tree(fi("f", sha="aaaa"))
    assert actions(make_plan(src, dst, CHECKSUM).items) == {"f": Action.UNCHANGED}
    assert actions(make_plan(src, dst, DEFAULT).items) == {"f": Action.CHANGED}


@pytest.mark.parametrize(("src_sha", "dst_sha"), [(None, "aaaa"), ("aaaa", None), (None, None)])
def test_checksum_missing_hash_is_changed(src_sha: str | None, dst_sha: str | None) -> None:
    src = tree(fi("f", sha=src_sha))
    dst = tree(fi("f", sha=dst_sha))
    assert actions(make_plan(src, dst, CHECKSUM).items) == {"f": Action.CHANGED}


def test_extra_folders_reported_topmost_only() -> None:
    src = tree(fi("keep/a.txt"))
    dst = tree(
        fi("keep/a.txt"),
        fi("keep/old.txt"),
        fi("gone/x.txt"),
        fi("gone/sub/y.txt"),
        fi("gone/sub/deeper/z.txt"),
        fi("keep/gone2/w.txt"),
        dirs=("emptygone", "emptygone/inner"),
    )
    plan = make_plan(src, dst, DEFAULT)
    assert plan.extra_dirs == ["emptygone", "gone", "keep/gone2"]
    # Files inside an extra folder are covered by the folder, not listed one by one.
    assert [i.path for i in plan.by_action(Action.EXTRA)] == ["keep/old.txt"]
    assert plan.extra_files_with_dirs(dst) == [
        "gone/sub/deeper/z.txt",
        "gone/sub/y.txt",
        "gone/x.txt",
        "keep/gone2/w.txt",
        "keep/old.txt",
    ]


def test_extra_folder_with_similar_prefix_does_not_cover_a_sibling() -> None:
    src = tree(fi("docs2/a.txt"))
    dst = tree(fi("docs2/a.txt"), fi("docs/a.txt"), fi("docs2/b.txt"))
    plan = make_plan(src, dst, DEFAULT)
    assert plan.extra_dirs == ["docs"]
    assert [i.path for i in plan.by_action(Action.EXTRA)] == ["docs2/b.txt"]


def test_mkdirs_parents_first() -> None:
    src = tree(
        fi("z/y/x/w.txt"),
        fi("a/b/c.txt"),
        fi("m.txt"),
        dirs=("empty", "a/empty", "z/y/x/v/u"),
    )
    dst = tree(fi("a/old.txt"))
    plan = make_plan(src, dst, DEFAULT)
    expected = {"empty", "a/empty", "a/b", "z", "z/y", "z/y/x", "z/y/x/v", "z/y/x/v/u"}
    assert set(plan.mkdirs) == expected
    assert "a" not in plan.mkdirs  # already on the destination
    for i, folder in enumerate(plan.mkdirs):
        parent = folder.rpartition("/")[0]
        if parent and parent in plan.mkdirs:
            assert plan.mkdirs.index(parent) < i, plan.mkdirs


def test_source_errors_are_carried_into_the_plan() -> None:
    src = tree(fi("a"))
    src.errors.append(("locked", "cannot read folder: Permission denied"))
    plan = make_plan(src, Tree(), DEFAULT)
    assert plan.source_errors == [("locked", "cannot read folder: Permission denied")]


# --------------------------------------------------------------------------- mirror_refusal


def test_mirror_refuses_an_empty_source() -> None:
    src, dst = Tree(), tree(fi("a"), fi("b"))
    why = mirror_refusal(make_plan(src, dst, DEFAULT), src, dst, 100.0)
    assert why is not None and "empty" in why
    assert "\n" not in why


def test_mirror_refuses_an_empty_source_even_when_the_share_is_empty() -> None:
    src, dst = Tree(), Tree()
    assert mirror_refusal(make_plan(src, dst, DEFAULT), src, dst, 50.0) is not None


def test_mirror_allows_a_source_with_only_folders() -> None:
    src, dst = Tree(dirs={"folder"}), Tree(dirs={"folder"})
    assert mirror_refusal(make_plan(src, dst, DEFAULT), src, dst, 50.0) is None


def _four_of_ten() -> tuple[Tree, Tree]:
    """A share of 10 files of which 4 are gone locally (2 files, 2 inside a folder)."""
    kept = [fi(f"k{i}") for i in range(6)]
    src = tree(*kept)
    dst = tree(*kept, fi("gone1"), fi("gone2"), fi("old/x"), fi("old/y"))
    return src, dst


def test_mirror_refuses_above_max_delete() -> None:
    src, dst = _four_of_ten()
    plan = make_plan(src, dst, DEFAULT)
    why = mirror_refusal(plan, src, dst, 39.0)
    assert why is not None
    assert "4 of 10" in why and "max-delete" in why and "\n" not in why


def test_mirror_allows_exactly_at_max_delete() -> None:
    src, dst = _four_of_ten()
    plan = make_plan(src, dst, DEFAULT)
    assert mirror_refusal(plan, src, dst, 40.0) is None
    assert mirror_refusal(plan, src, dst, 100.0) is None


def test_mirror_counts_files_inside_extra_folders() -> None:
    kept = [fi(f"k{i}") for i in range(2)]
    src = tree(*kept)
    dst = tree(*kept, fi("old/a"), fi("old/sub/b"), fi("old/sub/c"))
    plan = make_plan(src, dst, DEFAULT)
    assert plan.extra_dirs == ["old"]
    assert mirror_refusal(plan, src, dst, 59.0) is not None  # 3 of 5 = 60 %
    assert mirror_refusal(plan, src, dst, 60.0) is None


def test_mirror_with_nothing_to_move_is_allowed_at_zero_percent() -> None:
    src = tree(fi("a"))
    dst = tree(fi("a"))
    assert mirror_refusal(make_plan(src, dst, DEFAULT), src, dst, 0.0) is None
    src = tree(fi("a"), fi("b"))
    dst = Tree()
    assert mirror_refusal(make_plan(src, dst, DEFAULT), src, dst, 0.0) is None


# --------------------------------------------------------------------------- need_transfer


class TestNeedTransfer:
    """One test per documented rule, in order."""

    def test_rule1_sizes_differ_copies_even_with_equal_time_and_hash(self) -> None:
        a, b = fi("f", size=1, sha="h"), fi("f", size=2, sha="h")
        assert need_transfer(a, b, DEFAULT)
        assert need_transfer(a, b, CHECKSUM)
        assert need_transfer(b, a, CompareRules(modify_window=1e9))

    def test_rule1_zero_byte_files_are_equal_in_size(self) -> None:
        assert not need_transfer(fi("f", size=0), fi("f", size=0), DEFAULT)

    def test_rule2_checksum_equal_hashes_do_not_copy_whatever_the_time(self) -> None:
        a, b = fi("f", mtime=T0, sha="h"), fi("f", mtime=T0 + 1e6, sha="h")
        assert not need_transfer(a, b, CHECKSUM)

    def test_rule2_checksum_different_hashes_copy_even_with_equal_time(self) -> None:
        assert need_transfer(fi("f", sha="h1"), fi("f", sha="h2"), CHECKSUM)

    def test_rule2_checksum_unknown_hash_copies(self) -> None:
        assert need_transfer(fi("f", sha=None), fi("f", sha="h"), CHECKSUM)
        assert need_transfer(fi("f", sha="h"), fi("f", sha=None), CHECKSUM)
        assert need_transfer(fi("f"), fi("f"), CHECKSUM)

    def test_rule3_times_within_the_window_do_not_copy(self) -> None:
        assert not need_transfer(fi("f", mtime=T0 + 1.9), fi("f"), DEFAULT)
        assert not need_transfer(fi("f"), fi("f", mtime=T0 + 1.9), DEFAULT)
        assert not need_transfer(fi("f", mtime=T0 + 2.0), fi("f"), DEFAULT)

    def test_rule3_times_beyond_the_window_copy_either_way(self) -> None:
        assert need_transfer(fi("f", mtime=T0 + 2.1), fi("f"), DEFAULT)
        assert need_transfer(fi("f"), fi("f", mtime=T0 + 2.1), DEFAULT)

    def test_rule3_zero_window_copies_any_time_difference(self) -> None:
        rules = CompareRules(modify_window=0.0)
        assert not need_transfer(fi("f"), fi("f"), rules)
        assert need_transfer(fi("f", mtime=T0 + 0.001), fi("f"), rules)

    def test_rule3_hashes_are_ignored_without_checksum(self) -> None:
        assert not need_transfer(fi("f", sha="h1"), fi("f", sha="h2"), DEFAULT)
        assert need_transfer(fi("f", mtime=T0 + 9, sha="h"), fi("f", sha="h"), DEFAULT)
