"""The questions that build or edit a profile, answered by a script instead of a person."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest

from backdown.environment import Environment
from backdown.initialize import Prompter, prompt_profile
from backdown.profile import Profile
from backdown.profile_store import ProfileStore


class Script:
    """Answers each question with the next line of a script and keeps a transcript.

    Hidden questions are answered from the same script but their answers stay out of the
    transcript, the way a terminal does not echo them; `hidden` records those prompts.
    """

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.lines: list[str] = []
        self.hidden: list[str] = []
        self.prompter = Prompter(self._read, self._read_secret, self.lines.append, self._error)

    def _next(self) -> str:
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def _read(self, prompt: str) -> str:
        answer = self._next()
        self.lines.append(prompt + answer)
        return answer

    def _read_secret(self, prompt: str) -> str:
        self.hidden.append(prompt)
        self.lines.append(prompt)
        return self._next()

    def _error(self, text: str) -> None:
        self.lines.append(f"stderr: {text}")

    @property
    def transcript(self) -> str:
        return "\n".join(self.lines)

    def prompts(self, start: str) -> list[str]:
        """The lines that asked a question starting with start."""
        return [line for line in self.lines if line.startswith(start)]


def new_profile(store: ProfileStore, answers: list[str]) -> tuple[Profile, str | None, Script]:
    script = Script(answers)
    profile, password = prompt_profile(script.prompter, store)
    assert script.answers == [], f"questions not asked: {script.answers}\n{script.transcript}"
    return profile, password, script


def answers_for(folder: Path, /, **overrides: list[str]) -> list[str]:
    """The answers to a new profile's questions, in order; overrides replace one question's."""
    plan = {
        "name": ["home"],
        "local": [str(folder)],
        "server": ["127.0.0.1"],
        "port": [""],
        "share": ["backup"],
        "remote_folder": ["docs/2024"],
        "user": ["alice"],
        "domain": [""],
        "password": ["s3cret"],
    }
    plan.update(overrides)
    return [answer for question in plan.values() for answer in question]


@pytest.fixture
def store(tmp_path: Path) -> ProfileStore:
    return ProfileStore.load(tmp_path / "config")


@pytest.fixture
def local(tmp_path: Path) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    return folder


def saved_profile(store: ProfileStore, local: Path) -> Profile:
    profile = Profile(
        name="office",
        local=str(local),
        server="nas.example.lan",
        share="backup",
        remote_folder="office/pc1",
        port=4450,
        user="bob",
        domain="WORKGROUP",
        mode="mirror",
        keep_versions_days=7,
        excludes=["*.tmp"],
    )
    store.add(profile)
    return profile


# ------------------------------------------------------------------- a new profile


def test_enter_accepts_every_default(store: ProfileStore, local: Path) -> None:
    answers = ["", str(local), "10.0.0.5", "", "backup", "", "", ""]
    profile, password, script = new_profile(store, answers)

    assert (profile.name, profile.port, profile.remote_folder) == ("profile_1", 445, "")
    assert (profile.user, profile.domain, profile.local) == ("", "", str(local))
    assert password is None
    assert script.hidden == [], "a guest profile must not be asked for a password"
    assert script.prompts("Profile name [profile_1]: ")
    assert script.prompts("Port [445]: ")
    assert script.prompts("Folder inside the share (Enter = the share's root): ")
    assert script.prompts("User name (Enter = guest): ")


def test_the_default_name_counts_past_existing_profiles(store: ProfileStore, local: Path) -> None:
    store.add(Profile(name="profile_3", local=str(local), server="nas", share="backup"))
    profile, _, script = new_profile(store, ["", str(local), "nas", "", "backup", "", "", ""])
    assert profile.name == "profile_4"
    assert script.prompts("Profile name [profile_4]: ")


def test_all_answers_are_kept_and_the_password_is_read_hidden(
    store: ProfileStore, local: Path
) -> None:
    answers = answers_for(local, port=["4450"], domain=["CORP"])
    profile, password, script = new_profile(store, answers)

    assert profile == Profile(
        name="home",
        local=str(local),
        server="127.0.0.1",
        share="backup",
        remote_folder="docs/2024",
        port=4450,
        user="alice",
        domain="CORP",
        client_name=profile.client_name,
    )
    assert password == "s3cret"
    assert script.hidden == ["Password for alice (hidden; Enter = ask at each run): "]
    assert "s3cret" not in script.transcript


def test_an_empty_password_means_none_saved(store: ProfileStore, local: Path) -> None:
    profile, password, _ = new_profile(store, answers_for(local, password=[""]))
    assert profile.user == "alice"
    assert password is None


@pytest.mark.parametrize(
    ("question", "bad", "good", "reason"),
    [
        ("port", "0", "4450", "the port must be a number from 1 to 65535, not 0"),
        ("port", "70000", "4450", "the port must be a number from 1 to 65535, not 70000"),
        ("port", "smb", "4450", "the port must be a number from 1 to 65535, not 'smb'"),
        ("share", "a/b", "backup", "a share name cannot contain /"),
        ("share", "", "backup", "the share cannot be empty"),
        ("remote_folder", "../x", "x", "cannot contain '.' or '..'"),
        ("remote_folder", "a/../../etc", "x", "cannot contain '.' or '..'"),
        ("server", "", "127.0.0.1", "the server cannot be empty"),
        ("server", "nas:445", "127.0.0.1", "is not an IPv4 address, IPv6 address or host name"),
        ("server", "my nas", "127.0.0.1", "is not an IPv4 address, IPv6 address or host name"),
        ("name", "my/profile", "home", "a profile name must start with a letter or digit"),
        ("user", "a/b", "alice", "the user name contains characters SMB does not allow"),
        ("domain", "MY DOMAIN", "CORP", "the domain contains characters SMB does not allow"),
    ],
)
def test_a_bad_answer_is_refused_and_asked_again(
    store: ProfileStore, local: Path, question: str, bad: str, good: str, reason: str
) -> None:
    answers = answers_for(local, **{question: [bad, good]})
    profile, _, script = new_profile(store, answers)

    assert reason in script.transcript
    expected = int(good) if question == "port" else good
    assert getattr(profile, question) == expected
    # The refusal comes right after the bad answer, and the same question follows it.
    refusal = next(i for i, line in enumerate(script.lines) if reason in line)
    before, after = script.lines[refusal - 1], script.lines[refusal + 1]
    assert before.endswith(f": {bad}")
    assert after == before[: len(before) - len(bad)] + good


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("192.168.1.20", "192.168.1.20"),
        ("fe80::1", "fe80::1"),
        ("[::1]", "::1"),
        ("nas.example.lan", "nas.example.lan"),
        ("NAS", "NAS"),
    ],
)
def test_the_server_may_be_ipv4_ipv6_or_a_host_name(
    store: ProfileStore, local: Path, typed: str, stored: str
) -> None:
    profile, _, _ = new_profile(store, answers_for(local, server=[typed]))
    assert profile.server == stored


def test_the_remote_folder_is_normalised(store: ProfileStore, local: Path) -> None:
    profile, _, _ = new_profile(store, answers_for(local, remote_folder=["\\docs\\2024\\"]))
    assert profile.remote_folder == "docs/2024"


def test_a_name_in_use_is_refused_ignoring_case(store: ProfileStore, local: Path) -> None:
    saved_profile(store, local)
    profile, _, script = new_profile(store, answers_for(local, name=["Office", "office2"]))
    assert "a profile named 'office' already exists; choose another name" in script.transcript
    assert profile.name == "office2"


def test_a_missing_local_folder_is_created_when_accepted(
    store: ProfileStore, tmp_path: Path
) -> None:
    missing = tmp_path / "new" / "photos"
    profile, _, script = new_profile(store, answers_for(missing, local=[str(missing), ""]))
    assert missing.is_dir()
    assert profile.local == str(missing)
    assert script.prompts(f"{missing} does not exist. Create it? [Y/n] ")
    assert f"created {missing}" in script.lines


def test_a_missing_local_folder_may_be_kept_with_a_warning(
    store: ProfileStore, tmp_path: Path
) -> None:
    missing = tmp_path / "restore-here"
    profile, _, script = new_profile(store, answers_for(missing, local=[str(missing), "n"]))
    assert not missing.exists()
    assert profile.local == str(missing)
    assert f"kept {missing}; it must exist before a backup (a restore creates it)" in script.lines


def test_a_file_is_not_a_local_folder(store: ProfileStore, tmp_path: Path, local: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    profile, _, script = new_profile(store, answers_for(local, local=[str(a_file), str(local)]))
    assert f"{a_file} is a file, not a folder; give a folder" in script.lines
    assert profile.local == str(local)


def test_the_local_folder_is_made_absolute(
    store: ProfileStore, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(local.parent)
    profile, _, _ = new_profile(store, answers_for(local, local=[local.name]))
    assert profile.local == str(local)


def test_a_yes_no_question_asks_again_until_answered(store: ProfileStore, tmp_path: Path) -> None:
    missing = tmp_path / "later"
    answers = answers_for(missing, local=[str(missing), "maybe", "NO"])
    profile, _, script = new_profile(store, answers)
    assert "please answer y or n" in script.lines
    assert not missing.exists()


@pytest.mark.parametrize("stop", [EOFError, KeyboardInterrupt])
def test_ctrl_d_and_ctrl_c_reach_the_caller_and_nothing_is_changed(
    store: ProfileStore, local: Path, stop: type[BaseException]
) -> None:
    def read(prompt: str) -> str:
        if prompt.startswith("Share"):
            raise stop
        return {"Profile": "home", "Local": str(local), "Server": "nas"}.get(prompt.split()[0], "")

    with pytest.raises(stop):
        prompt_profile(Prompter(read, read, lambda _: None), store)
    assert store.profiles == []
    assert not store.path.exists()


# ---------------------------------------------------------------------- editing


def test_editing_shows_current_values_and_enter_keeps_them(
    store: ProfileStore, local: Path
) -> None:
    existing = saved_profile(store, local)
    before = copy.deepcopy(existing)
    script = Script([""] * 7 + [""])

    edited, password = prompt_profile(script.prompter, store, existing)

    assert script.answers == []
    assert edited == before
    assert edited is not existing
    assert password is None
    assert not script.prompts("Profile name"), "editing must not ask for the name"
    assert script.lines[0] == f"Local folder [{local}]: "
    for prompt in (
        "Server (IP address or host name) [nas.example.lan]: ",
        "Port [4450]: ",
        "Share name [backup]: ",
        "Folder inside the share ('-' = the share's root) [office/pc1]: ",
        "User name ('-' = guest) [bob]: ",
        "Domain ('-' = none) [WORKGROUP]: ",
    ):
        assert script.prompts(prompt), prompt
    assert script.hidden == ["Password for bob (hidden; Enter = keep the saved one): "]


def test_editing_changes_only_what_is_typed(store: ProfileStore, local: Path) -> None:
    existing = saved_profile(store, local)
    script = Script(["", "192.168.0.9", "445", "", "", "carol", "", "new-pw"])

    edited, password = prompt_profile(script.prompter, store, existing)

    assert (edited.server, edited.port, edited.user, edited.remote_folder) == (
        "192.168.0.9",
        445,
        "carol",
        "office/pc1",
    )
    assert (edited.mode, edited.keep_versions_days, edited.excludes) == ("mirror", 7, ["*.tmp"])
    assert password == "new-pw"
    assert existing.server == "nas.example.lan", "the saved profile changes only when stored"


def test_editing_a_dash_empties_an_optional_setting(store: ProfileStore, local: Path) -> None:
    existing = saved_profile(store, local)
    script = Script(["", "", "", "", "-", "-", "-"])

    edited, password = prompt_profile(script.prompter, store, existing)

    assert script.answers == []
    assert (edited.remote_folder, edited.user, edited.domain) == ("", "", "")
    assert password is None
    assert script.hidden == [], "a guest has no password to ask for"


def test_editing_still_validates(store: ProfileStore, local: Path) -> None:
    existing = saved_profile(store, local)
    script = Script(["", "", "70000", "", "", "../up", "", "", "", ""])

    edited, _ = prompt_profile(script.prompter, store, existing)

    assert script.answers == []
    assert "the port must be a number from 1 to 65535, not 70000" in script.lines
    assert "the folder inside the share cannot contain '.' or '..'" in script.lines
    assert (edited.port, edited.remote_folder) == (4450, "office/pc1")


# ---------------------------------------------------------------------- Prompter


def test_a_prompter_on_plain_streams_reads_lines_and_writes_prompts(tmp_path: Path) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO("  answer  \n\nhidden pw \n"),
        stdout=stdout,
        stderr=stderr,
        environ={},
        config_dir=tmp_path,
    )
    prompter = Prompter.for_environment(env)

    assert prompter.ask("Question") == "answer"
    assert prompter.ask("Port", "445") == "445"
    assert prompter.ask_secret("Password") == "hidden pw "
    prompter.say("a line")
    prompter.warn("a warning")
    with pytest.raises(EOFError):
        prompter.ask("One too many")

    assert stdout.getvalue() == ("Question: Port [445]: Password: a line\nOne too many: ")
    assert stderr.getvalue() == "a warning\n"
