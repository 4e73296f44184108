"""The mapping of local names to names a share can store, and back (backdown.share_names)."""

from __future__ import annotations

import posixpath
import random

import pytest

from backdown.share_names import (
    CASE_MARK,
    ESCAPE,
    _decode,
    _encode,
    case_marked,
    decode,
    decode_path,
    encode,
    store_paths,
)

FORBIDDEN = set('<>:"/\\|?*') | {chr(i) for i in range(0x20)} | {"\x7f"}
DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
           *(f"LPT{i}" for i in range(1, 10))}  # fmt: skip

HARD = [
    "CON", "con", "aux.txt", "nul.txt", "Com1", "LPT9.tar.gz", "prn.", "trailing.",
    "trailing space ", "both. ", "a:b", 'q"uote', "back\\slash", "a|b", "why?", "st*r",
    "<tag>", "tab\there", "bell\x07", "del\x7f", "a\u2420", "dot\uff0e", "x\uff1ay",
    "COＮ", "auＸ.txt", "esc\u201bape", "\u201b", "mark\u2038", "m\u20381.txt", "plain.txt",
    "日本語.txt", "ＡＢＣ.txt", "emoji 😀", " leading", ".hidden", "..dots", "...",
    "con.", "CON ", "NUL.tar", "COM10", "coma", "LPT", "\u2401", "x\u241f", "a..",
    "CON.ｔxt", "aux.（1）.txt", "LPT1.１", "prn.ａ：b",
]  # fmt: skip


def windows_can_store(name: str) -> bool:
    base = name.partition(".")[0]
    return (
        not (set(name) & FORBIDDEN)
        and not name.endswith((" ", "."))
        and base.upper() not in DEVICES
    )


@pytest.mark.parametrize("name", HARD)
def test_every_name_round_trips_and_is_storable(name: str) -> None:
    stored = encode(name)
    assert decode(stored) == name
    assert windows_can_store(stored), stored
    marked = case_marked(name)
    assert decode(marked) == name
    assert windows_can_store(marked), marked


def test_the_mapping_is_the_documented_one() -> None:
    assert encode('a<b>c:d"e\\f|g?h*i') == "a＜b＞c：d＂e＼f｜g？h＊i"
    assert encode("CON") == "COＮ" and encode("aux.txt") == "auｘ.txt"
    assert encode("COM1.log") == "COM１.log"
    assert encode("end. ") == "end.␠" and encode("end.") == "end．"
    assert encode("a\x01b") == "a␁b"
    assert encode("plain name.txt") == "plain name.txt"  # the usual name is untouched
    assert encode("ＡＢＣ.txt") == "ＡＢＣ.txt"  # full-width text that is no device name
    assert encode("x＜y") == f"x{ESCAPE}＜y"
    assert encode(f"a{CASE_MARK}1") == f"a{ESCAPE}{CASE_MARK}1"


def test_random_names_round_trip() -> None:
    alphabet = 'aA.: \\|?*<>"‛‸␠．Ｎ＜␁\x01\x7fNnOoCc1' + "日é"
    rng = random.Random(7)
    for _ in range(5000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9)))
        if name in (".", ".."):
            continue
        stored = encode(name)
        assert decode(stored) == name, (name, stored)
        assert decode(case_marked(name)) == name, name
        assert windows_can_store(stored), (name, stored)


def test_the_fast_paths_give_what_the_full_mapping_gives() -> None:
    """encode and decode return most names as they are without walking them: for every
    name, what they give must be what the character-by-character mapping gives."""
    alphabet = 'aA.: \\|?*<>"‛‸␠␡．Ｎｘ＜～␁\x01\x7fNnOoCcUuXxPpRrLlTtMm19'
    alphabet += "日é\u2422\uff00\uff5f"
    rng = random.Random(11)
    names = HARD + ["CON", "Aux", "nul.x.y", "lpt1", "com9.", "plain", "a b", ""]
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(20000)]
    for name in names:
        assert encode(name) == _encode(name), name
        assert decode(name) == _decode(name), name
        assert decode(encode(name)) == name, name


def test_names_differing_only_in_case_get_distinct_stable_names() -> None:
    paths = ["A.txt", "a.txt", "Dir", "dir", "Dir/f.txt", "dir/g.txt", "dir/G.txt", "x"]
    stored = store_paths(paths, ignore_case=True)
    assert stored["A.txt"] == "A.txt"  # the first in code point order keeps its name
    assert stored["a.txt"] == f"a{CASE_MARK}0.txt"
    assert stored["dir"] == f"dir{CASE_MARK}0"
    assert stored["Dir/f.txt"] == "Dir/f.txt"
    assert stored["dir/G.txt"] == f"dir{CASE_MARK}0/G.txt"
    assert stored["dir/g.txt"] == f"dir{CASE_MARK}0/g{CASE_MARK}0.txt"
    assert len({s.casefold() for s in stored.values()}) == len(paths)
    assert {decode_path(s): p for p, s in stored.items()} == {p: p for p in paths}
    # The same file keeps its stored name run after run, whatever else comes and goes.
    assert store_paths([*paths, "b.txt", "B.TXT"], ignore_case=True)["a.txt"] == stored["a.txt"]
    assert store_paths(paths, ignore_case=False) == {p: p for p in paths}


def test_three_spellings_of_one_name_stay_apart() -> None:
    paths = ["ab", "Ab", "aB", "AB"]
    stored = store_paths(paths, ignore_case=True)
    assert len({s.casefold() for s in stored.values()}) == 4
    assert all(decode(stored[p]) == p for p in paths)


def test_what_the_share_holds_keeps_its_name_when_a_twin_appears() -> None:
    """a.txt was backed up alone; then A.txt (sorting first) appears. a.txt must not move,
    A.txt takes a case-marked name (a change of case alone takes the new spelling)."""
    on_share = {"a.txt": "a.txt", "docs": "docs", "docs/x": "docs/x", "Dir": "dir"}
    occupied = {"": {"a.txt", "docs", "dir"}, "docs": {"x"}}
    paths = ["a.txt", "A.txt", "docs", "docs/x", "Docs", "Docs/y", "Dir"]
    stored = store_paths(paths, ignore_case=True, on_share=on_share, occupied=occupied)
    assert stored["a.txt"] == "a.txt" and stored["docs/x"] == "docs/x"
    assert stored["A.txt"] == f"A{CASE_MARK}1.txt"
    assert stored["Docs"] == f"Docs{CASE_MARK}1" and stored["Docs/y"] == f"Docs{CASE_MARK}1/y"
    assert stored["Dir"] == "Dir"  # 'dir' on the share, renamed locally only in case
    assert len({s.casefold() for s in stored.values()}) == len(paths)
    # A case-marked name on the share stays, whatever comes and goes beside it.
    kept = store_paths(["a.txt"], True, {"a.txt": f"a{CASE_MARK}0.txt"}, {"": {"a‸0.txt"}})
    assert kept == {"a.txt": f"a{CASE_MARK}0.txt"}


def test_store_paths_over_random_trees_keeps_names_and_stays_reversible() -> None:
    """Random trees, part of each already on a case-insensitive share (some under mapped
    or case-marked names): every path comes back from its stored path, nothing on the
    share moves, and no two stored names in a folder differ only in case."""
    rng = random.Random(5)
    letters = "aAbB.: ?‸1"
    for _ in range(300):
        folders = ["", *{rng.choice(["d", "D", "e", "d:x"]) for _ in range(3)}]
        paths = set(f for f in folders if f)
        for _ in range(rng.randint(1, 12)):
            folder = rng.choice(folders)
            name = "".join(rng.choice(letters) for _ in range(rng.randint(1, 4)))
            if name not in (".", ".."):
                paths.add(f"{folder}/{name}" if folder else name)
        backed_up = set(rng.sample(sorted(paths), k=len(paths) // 2))
        backed_up |= {posixpath.dirname(p) for p in backed_up} - {""}  # a share has its folders
        before = store_paths(backed_up, ignore_case=True)
        on_share = dict(before)
        occupied: dict[str, set[str]] = {}
        for path, stored in on_share.items():
            occupied.setdefault(posixpath.dirname(path), set()).add(
                posixpath.basename(stored).casefold()
            )
        stored = store_paths(sorted(paths), True, on_share, occupied)
        assert set(stored) == paths
        for path, where in stored.items():
            assert decode_path(where) == path
            if path in on_share:
                assert where == on_share[path], "what the share holds keeps its name"
        by_folder: dict[str, list[str]] = {}
        for where in stored.values():
            by_folder.setdefault(posixpath.dirname(where), []).append(
                posixpath.basename(where).casefold()
            )
        for names in by_folder.values():
            assert len(names) == len(set(names)), names


def test_a_name_the_share_holds_as_is_but_reads_back_otherwise_is_stored_anew() -> None:
    """'a＜b' on the share as it is (written before names were mapped) reads back as 'a<b':
    the local 'a＜b' must get its own, escaped, name; 'plain' stays where it is."""
    on_share = {"a＜b": "a＜b", "plain": "plain"}
    stored = store_paths(["a＜b", "plain"], False, on_share, {"": {"a＜b", "plain"}})
    assert stored == {"a＜b": f"a{ESCAPE}＜b", "plain": "plain"}
