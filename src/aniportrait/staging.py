"""Hidden staging files and folders beside outputs, named after their writer so that a later run can remove the
ones a dead writer left behind (SIGKILL, power loss) without ever touching a live writer's.

Names are ``.{kind}-{owner}-{pid}-{rest}``. ``kind`` is ``tmp`` (the folder of a file that :func:`atomic_write` is
writing), ``render`` (a render's per-seed staging folder) or ``write-test`` (the render's writability probe).
``owner`` is 8 hex digits naming this host and PID namespace, in which ``pid`` is the writer's process id. An entry
is stale when its owner is ours and no process ``pid`` exists. Entries of other owners (another machine on a shared
disk, another container), of live processes, and names in any other form are kept. Leftovers from before a reboot
go too, as their PID no longer exists; if it was reused, the entry is kept (never wrongly removed).

:func:`atomic_write` gives its file the mode the umask gives an ordinary file (``0o666 & ~umask``: 0644 under umask
022), as if it had been written in place.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Callable, Iterable

KINDS = ("tmp", "render", "write-test")
_NAME = re.compile(r"^\.(?P<kind>" + "|".join(map(re.escape, KINDS)) + r")-(?P<owner>[0-9a-f]{8})-(?P<pid>[0-9]+)-")


@functools.cache
def owner_id() -> str:
    """8 hex digits for this host and PID namespace: the scope in which a writer's PID can be checked."""
    parts = [socket.gethostname()]
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass  # no /proc (not Linux): the host name alone
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def owned_prefix(kind: str, pid: int | None = None) -> str:
    """``.{kind}-{owner}-{pid}-``: the start of a staging name of this process (or of ``pid``, for tests)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return f".{kind}-{owner_id()}-{os.getpid() if pid is None else pid}-"


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts); True whenever that cannot be told."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # PermissionError: it exists under another user
        return True
    return True


def stale_entries(folder: str | os.PathLike, kinds: Iterable[str] = KINDS) -> list[str]:
    """Paths in ``folder`` of the given kinds whose writer is provably gone (see the module docstring)."""
    kinds = set(kinds)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    stale = []
    for name in sorted(names):
        match = _NAME.match(name)
        if match and match["kind"] in kinds and match["owner"] == owner_id() and not process_exists(int(match["pid"])):
            stale.append(os.path.join(folder, name))
    return stale


def remove_stale(folder: str | os.PathLike, kinds: Iterable[str] = KINDS) -> list[str]:
    """Remove :func:`stale_entries` (files, or folders with their contents); returns the removed paths."""
    removed = []
    for path in stale_entries(folder, kinds):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError:
            pass  # another run removed it first
        except OSError:
            continue  # not ours to force: leave it
        removed.append(path)
    return removed


def create_dir(folder: str | os.PathLike, kind: str, label: str = "") -> str:
    """Create a private folder ``.{kind}-{owner}-{pid}-{label}{random}`` in ``folder``; return its path."""
    for _ in range(100):
        path = os.path.join(folder, f"{owned_prefix(kind)}{label}{secrets.token_hex(4)}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free staging name in {folder}")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)``, then rename ``tmp`` to ``path``: never a partial file.

    ``tmp`` has ``path``'s name (writers that pick the format by extension still work) inside a ``tmp`` staging
    folder beside ``path``, so a writer's own temporary files (safetensors makes one) are staged too. The file gets
    the umask's mode. Stale ``tmp`` staging entries of dead writers in ``path``'s folder are removed first.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale(folder, ("tmp",))
    staging = create_dir(folder, "tmp")
    try:
        tmp = os.path.join(staging, os.path.basename(path))
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
        umask_mode = os.stat(tmp).st_mode  # what the umask gives a new file
        write(tmp)
        if os.stat(tmp).st_mode != umask_mode:  # a writer that replaces the file (safetensors) makes it 0600
            os.chmod(tmp, stat.S_IMODE(umask_mode))
        os.replace(tmp, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
