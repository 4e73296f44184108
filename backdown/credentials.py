"""Where a profile's password comes from, and where a saved one goes.

Sources, first match wins: --password-stdin, BACKDOWN_PASSWORD, the system keyring, the
profile's credentials file, an interactive prompt. A guest profile (no user, and no
username= in its credentials file) needs none. resolve_logon decides who logs on.

Saved passwords go to the system keyring under SERVICE with the profile's name as the key,
or, when there is no usable keyring, to a 0600 file <config dir>/credentials/<profile name>.
A password never appears in an error message, a repr or a log.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from backdown.environment import PASSWORD_VAR, Environment
from backdown.errors import CredentialsError, UsageError, quoted
from backdown.profile import (
    Profile,
    split_domain_user,
    validate_domain,
    validate_name,
    validate_user,
)
from backdown.profile_store import ensure_private_dir, write_private_file
from backdown.smb.kerberos import ticket_principal

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE = "backdown"
CREDENTIALS_DIR = "credentials"


def resolve_logon(
    profile: Profile,
    env: Environment,
    *,
    password_stdin: bool = False,
    prompt: Callable[[str], str] | None = None,
) -> tuple[Profile, str]:
    """Who logs on for a run, and the password: the one place that decides it.

    A profile with a user logs on as that user. A profile without one but with a
    credentials file logs on as the file's username= (and its domain=, unless the profile
    has a domain), so the file is read, and its permissions checked, on that path too; with
    no username= there either, the run is a guest's. Returns the profile to run with (a
    copy when the file supplied the user; the saved profile is never changed) and its
    password.
    """
    if not profile.user and profile.credentials_file:
        path = profile.credentials_file
        values = read_credentials_file(path)
        try:
            user = validate_user(values.get("username", ""))
            domain = profile.domain or validate_domain(values.get("domain", ""))
            user, domain = split_domain_user(user, domain)
        except UsageError as err:
            raise CredentialsError(f"credentials file {path}: {err}") from None
        if user:
            profile = dataclasses.replace(profile, user=user, domain=domain)
    if profile.auth == "kerberos":
        return profile, ""  # the user's ticket: no password is looked up or asked for
    if profile.auth == "auto" and profile.user:
        at_hand = _password_at_hand(profile, env, password_stdin)
        if at_hand is not None:
            return profile, at_hand
        if ticket_principal(env.environ) is not None:
            return dataclasses.replace(profile, auth="kerberos"), ""
    password = resolve_password(profile, env, password_stdin=password_stdin, prompt=prompt)
    return profile, password


def _password_at_hand(profile: Profile, env: Environment, password_stdin: bool) -> str | None:
    """The password from the first source that has one, without asking anyone; None when
    none has. An empty BACKDOWN_PASSWORD counts as unset: it is far more often left over
    than meant."""
    if password_stdin:
        return _read_stdin_password(env)
    from_env = env.environ.get(PASSWORD_VAR)
    if from_env:
        return from_env
    stored = _keyring_get(profile.name)
    if stored is not None:
        return stored
    if profile.credentials_file:
        return read_credentials_file(profile.credentials_file).get("password")
    return None


def resolve_password(
    profile: Profile,
    env: Environment,
    *,
    password_stdin: bool = False,
    prompt: Callable[[str], str] | None = None,
) -> str:
    """The password to log in with, from the first source that has one (_password_at_hand),
    else asked with `prompt`.

    A guest profile (empty user) gets "" without looking anywhere. The profile's user always
    wins over a username= line in the credentials file.
    """
    if not profile.user:
        return ""
    at_hand = _password_at_hand(profile, env, password_stdin)
    if at_hand is not None:
        return at_hand
    if prompt is not None:
        who = f"{profile.domain}\\{profile.user}" if profile.domain else profile.user
        return prompt(f"Password for {who}@{profile.server}: ")
    if profile.credentials_file:
        raise CredentialsError(
            f"credentials file {profile.credentials_file} has no password= line; add one, "
            f"give --password-stdin or set {PASSWORD_VAR}"
        )
    raise CredentialsError(
        f"no password for profile {quoted(profile.name)}: give --password-stdin, set "
        f"{PASSWORD_VAR}, or save one with 'backdown profile edit {profile.name} --password-stdin'"
    )


def save_password(profile: Profile, password: str, env: Environment) -> str:
    """Save the password for later runs and return a line telling the user where it went.

    Into the system keyring when there is a usable one; otherwise into our own 0600
    credentials file, and profile.credentials_file then points at it (the caller saves the
    profile store).
    """
    own = own_credentials_path(profile.name, env)
    backend = _usable_keyring()
    refused = ""
    if backend is not None:
        try:
            backend.set_password(SERVICE, profile.name, password)
        except Exception:
            # A locked or broken keyring: keep the password in our file instead.
            refused = "the system keyring refused the password"
        else:
            # The keyring comes first when reading, so our file would only be a stale copy.
            _remove_own_file(profile, own)
            return "password saved in the system keyring"
    _save_own_file(profile, password, own, env)
    replaced = ""
    if profile.credentials_file and not _same_file(profile.credentials_file, own):
        replaced = f"; the profile no longer uses {profile.credentials_file}"
    profile.credentials_file = str(own)
    why = refused or "no system keyring available"
    return f"{why}; password saved in {own} (readable only by you){replaced}"


def unattended_password_problem(profile: Profile, platform: str) -> str | None:
    """Why a scheduled run could not get the profile's password, or None when it can.

    A scheduled run has no terminal to ask at and no BACKDOWN_PASSWORD; on Linux it usually
    has no keyring either (no desktop session, or the user is logged out), while the Windows
    Credential Manager and the macOS keychain are open to a job that runs as the user. A
    Kerberos profile needs no password (its ticket must last, see the README).
    """
    if profile.auth == "kerberos":
        return None
    if profile.credentials_file:
        try:
            values = read_credentials_file(profile.credentials_file)
        except CredentialsError as err:
            return str(err)
        if "password" in values or (not profile.user and not values.get("username")):
            return None
    if not profile.user:
        return None
    if _keyring_get(profile.name) is not None:
        if platform.startswith("linux"):
            return (
                "its password is only in the system keyring, which a scheduled run on Linux "
                "usually cannot open (no desktop session, or you are logged out)"
            )
        return None
    return "no password is saved for it, and a scheduled run cannot ask for one"


def save_password_to_file(profile: Profile, password: str, env: Environment) -> str:
    """Save the password in our own 0600 credentials file (for scheduled runs) and point the
    profile at it; returns a line saying where it went. The keyring's copy stays until the
    caller has saved the profile (forget_keyring_copy), so no failure loses the password."""
    own = own_credentials_path(profile.name, env)
    _save_own_file(profile, password, own, env)
    profile.credentials_file = str(own)
    return f"password saved in {own} (readable only by you) for scheduled runs"


def forget_keyring_copy(name: str) -> None:
    """Drop the keyring's copy of a password now kept in our own file: one place holds it."""
    backend = _usable_keyring()
    if backend is not None:
        try:
            backend.delete_password(SERVICE, name)
        except Exception:
            pass  # nothing there, or a keyring we cannot change: the file is read second anyway


def forget_password(profile: Profile, env: Environment) -> None:
    """Remove the profile's keyring entry and our own credentials file for it.

    A credentials file the user chose is never deleted, and the profile keeps pointing at it.
    """
    backend = _usable_keyring()
    if backend is not None:
        try:
            backend.delete_password(SERVICE, profile.name)
        except Exception:
            pass  # nothing saved under this name, or a keyring we cannot change
    _remove_own_file(profile, own_credentials_path(profile.name, env))


def rename_password(old_name: str, profile: Profile, env: Environment) -> None:
    """Move the saved password of a profile renamed from old_name to profile.name.

    Moves our own credentials file and the keyring entry, and updates
    profile.credentials_file if it pointed at that file. The password is never lost: if the
    keyring will not take it under the new name it stays under the old one (and the user is
    asked again); if a rename that changes only the case had to delete it first and the
    keyring takes it back under neither name, it goes to our own credentials file for the
    new name. CredentialsError when even that fails.
    """
    if old_name == profile.name:
        return
    # The file first: if it cannot be moved nothing has changed yet, and a password the
    # keyring drops below then lands in a file that the move cannot overwrite.
    old_file = own_credentials_path(old_name, env)
    new_file = own_credentials_path(profile.name, env)
    try:
        os.replace(old_file, new_file)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise CredentialsError(
            f"cannot rename {old_file} to {new_file}: {(err.strerror or 'error').lower()}; "
            "rename it by hand"
        ) from None
    else:
        if profile.credentials_file and _same_file(profile.credentials_file, old_file):
            profile.credentials_file = str(new_file)
    backend = _usable_keyring()
    if backend is not None:
        _move_keyring_entry(backend, old_name, profile, env)


def read_credentials_file(path: str) -> dict[str, str]:
    """Read a credentials file in the format of mount.cifs and 'smbclient -A'.

    Lines are key=value (username, password, domain); '#' comments, blank lines and lines
    without '=' are ignored; keys are not case sensitive. As in Samba, spaces around the
    key and after '=' are dropped but the rest of the line is the value, so a password may
    end in spaces. Refused if other users can read or change the file.
    """
    try:
        # O_NONBLOCK: a FIFO put where the file should be must not hang the run.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CredentialsError(
            f"credentials file {path} does not exist; create it (mode 600) or change the "
            "profile's credentials file"
        ) from None
    except OSError as err:
        raise CredentialsError(
            f"cannot read credentials file {path}: {(err.strerror or 'error').lower()}; "
            "check the file's permissions"
        ) from None
    try:
        # fstat the open file, not the path: the file checked is the file read.
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise CredentialsError(f"credentials file {path} is a folder; give a file")
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsError(f"credentials file {path} is not a regular file; give a file")
        mode = stat.S_IMODE(info.st_mode)
        # Windows has no such modes (os.stat reports 0666), so the check is POSIX only.
        if os.name == "posix" and mode & 0o077:
            how = "readable" if mode & 0o044 else "writable" if mode & 0o022 else "usable"
            raise CredentialsError(
                f"credentials file {path} is {how} by other users (mode {mode:04o}); "
                f"run: chmod 600 {path}"
            )
        with os.fdopen(fd, "rb", closefd=False) as file:
            raw = file.read()
    except OSError as err:
        raise CredentialsError(
            f"cannot read credentials file {path}: {(err.strerror or 'error').lower()}"
        ) from None
    finally:
        os.close(fd)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # The decoder's message quotes the bad byte, which may belong to the password.
        raise CredentialsError(
            f"credentials file {path} is not UTF-8 text; save it as UTF-8"
        ) from None
    values: dict[str, str] = {}
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.lstrip(" \t")
    return values


def own_credentials_path(name: str, env: Environment) -> Path:
    """The credentials file backdown writes for the profile called name."""
    # validate_name keeps the name a plain file name: no '/', '..' or leading dot.
    return env.config_path / CREDENTIALS_DIR / validate_name(name)


def _read_stdin_password(env: Environment) -> str:
    line = env.stdin.readline()
    if not line:
        raise CredentialsError(
            "--password-stdin was given but standard input is empty; "
            "pipe the password in, e.g. from a password manager"
        )
    if line.endswith("\r\n"):
        return line[:-2]
    return line[:-1] if line.endswith("\n") else line


def _usable_keyring() -> KeyringBackend | None:
    """The system keyring backend, or None when there is no usable one.

    keyring is imported here, not at the top: importing it is slow and most runs that read
    a password from elsewhere never need it.
    """
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        # The fail backend has priority 0, the null and empty chainer backends -1.
        if isinstance(backend, fail.Keyring) or not backend.priority > 0:
            return None
    except Exception:
        return None
    return backend


def _keyring_get(name: str) -> str | None:
    backend = _usable_keyring()
    if backend is None:
        return None
    try:
        return backend.get_password(SERVICE, name)
    except Exception:
        # A locked or broken keyring is the same as an empty one: try the next source.
        return None


def _move_keyring_entry(
    backend: KeyringBackend, old: str, profile: Profile, env: Environment
) -> None:
    """Move the keyring entry old to profile.name so that no failure loses the password."""
    new = profile.name
    try:
        password = backend.get_password(SERVICE, old)
    except Exception:
        return
    if password is None:
        return
    if old.casefold() != new.casefold():
        # Write the new entry first and delete the old one only once the new one reads
        # back: whatever fails, the password is still under one of the two names.
        if _set_confirmed(backend, new, password):
            try:
                backend.delete_password(SERVICE, old)
            except Exception:
                pass  # a leftover copy under the old name; the new entry is the one used
        return
    # Only the case differs. A keyring that ignores case (Windows) holds one entry for both
    # names, so writing 'Home' and then deleting 'home' would delete the password: delete
    # first, then write.
    try:
        backend.delete_password(SERVICE, old)
    except Exception:
        return
    if _set_confirmed(backend, new, password) or _set_confirmed(backend, old, password):
        return
    # The keyring took the password and will not give it back under either name: our own
    # file is the last place to keep it.
    own = own_credentials_path(new, env)
    try:
        _check_storable(password)
        _write_own_file(profile, password, own, env)
    except (CredentialsError, OSError) as err:
        if isinstance(err, OSError):
            why = (err.strerror or "error").lower()
        else:
            why = "the password contains a line break or starts with a space"
        raise CredentialsError(
            f"the system keyring lost the saved password while renaming profile {quoted(old)} "
            f"to {quoted(new)}, and it could not be saved in {own} either ({why}); enter it again "
            f"with 'backdown profile edit {new} --password-stdin'"
        ) from None
    profile.credentials_file = str(own)


def _set_confirmed(backend: KeyringBackend, name: str, password: str) -> bool:
    """Store the password under name; True only if the keyring then gives it back."""
    try:
        backend.set_password(SERVICE, name, password)
        return backend.get_password(SERVICE, name) == password
    except Exception:
        return False


def _save_own_file(profile: Profile, password: str, own: Path, env: Environment) -> None:
    """Write our credentials file, or say in one line why it cannot be."""
    _check_storable(password)
    try:
        _write_own_file(profile, password, own, env)
    except OSError as err:
        raise CredentialsError(
            f"cannot save the password in {own}: {(err.strerror or 'error').lower()}; "
            f"check that {own.parent} is writable, or give it with --password-stdin each time"
        ) from None


def _write_own_file(profile: Profile, password: str, own: Path, env: Environment) -> None:
    """Write our 0600 credentials file own for the profile; raises OSError."""
    lines = [
        f"# backdown password for profile {profile.name}; keep this file mode 600",
        f"username={profile.user}",
        f"password={password}",
    ]
    if profile.domain:
        lines.append(f"domain={profile.domain}")
    ensure_private_dir(env.config_path)
    ensure_private_dir(own.parent)
    write_private_file(own, ("\n".join(lines) + "\n").encode("utf-8"))


def _remove_own_file(profile: Profile, own: Path) -> None:
    """Delete our credentials file for the profile; clear credentials_file if it was ours."""
    try:
        own.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise CredentialsError(
            f"cannot remove {own}, which holds a saved password: "
            f"{(err.strerror or 'error').lower()}; delete it by hand"
        ) from None
    if profile.credentials_file and _same_file(profile.credentials_file, own):
        profile.credentials_file = ""


def _same_file(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _check_storable(password: str) -> None:
    """Refuse a password the credentials file format cannot give back unchanged."""
    if any(c in password for c in "\r\n\0"):
        raise CredentialsError(
            "this password contains a line break, which a credentials file cannot hold; "
            f"give it with --password-stdin or {PASSWORD_VAR} each time"
        )
    if password[:1] in (" ", "\t"):
        raise CredentialsError(
            "this password starts with a space, which a credentials file cannot hold; "
            f"give it with --password-stdin or {PASSWORD_VAR} each time"
        )
