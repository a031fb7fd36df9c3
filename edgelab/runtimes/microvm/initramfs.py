"""A tiny initramfs for one workload, written as a newc cpio archive in Python.

The guest needs only: ``/init`` (``init.c``: loads the virtio modules, opens the console
port, forks and execs the workload), ``/workload`` (the workload's own static native binary, the same
file the subprocess runtime spawns), the virtio modules from the kernel package, ``/dev`` with
``/dev/console`` (so the kernel gives init a stderr on the serial console), ``/proc`` to mount
and nothing else:
no shell, no libc, no busybox. Written here rather than by ``cpio`` so no cpio binary is
needed; not compressed, so the kernel spends no emulated cycles inflating it (~235 KB for
hello, the four modules most of it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, a regular file (``data``) or a character device."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def file(name: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(name, stat.S_IFREG | (0o755 if executable else 0o644), data)


def char_device(name: str, major: int, minor: int) -> Entry:
    return Entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    fields = (ino, entry.mode, 0, 0, 2 if stat.S_ISDIR(entry.mode) else 1, 0, len(entry.data),
              0, 0, entry.rdev[0], entry.rdev[1], len(name) + 1, 0)  # fmt: skip
    return _MAGIC + b"".join(b"%08x" % value for value in fields)


def newc_archive(entries: Iterable[Entry]) -> bytes:
    """The bytes of a newc ("070701") cpio archive holding ``entries`` in order, owned by root,
    mtime 0 (so the same inputs give the same bytes), ending with the trailer."""
    parts: list[bytes] = []
    offset = 0
    for ino, entry in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
        name = entry.name.lstrip("/").encode()
        head = _header(0 if entry.name == _TRAILER else ino, entry, name) + name + b"\0"
        head += _pad(offset + len(head))
        body = entry.data + _pad(len(entry.data))
        parts += (head, body)
        offset += len(head) + len(body)
    archive = b"".join(parts)
    return archive + _pad(len(archive))


def guest_entries(init: bytes, workload: bytes, modules: Iterable[Path]) -> list[Entry]:
    """What the guest's root holds: /init, /workload, /lib/edgelab/<module>.ko (init.c knows
    their names and load order), empty /dev and /proc to mount on, and /dev/console."""
    entries = [directory("dev"), char_device("dev/console", 5, 1), directory("proc"),
               directory("lib"), directory("lib/edgelab")]  # fmt: skip
    entries += [file(f"lib/edgelab/{module.name}", module.read_bytes()) for module in modules]
    entries += [file("init", init, executable=True), file("workload", workload, executable=True)]
    return entries


def write_initramfs(path: Path, init: bytes, workload: bytes, modules: Iterable[Path]) -> Path:
    """Write the workload's initramfs to ``path`` atomically (a temp file, then a rename)."""
    data = newc_archive(guest_entries(init, workload, modules))
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
    return path
