"""The tools' workspace: named root directories, and path resolution that cannot leave them.

Resolution walks the path one component at a time with directory file descriptors and
`O_NOFOLLOW`, so every symlink is seen and judged (followed only when its target stays inside
a root), and a path swapped between check and open is still caught: what is finally opened is
checked with `fstat`.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from django.conf import settings

from tools.base import ToolError

MAX_SYMLINK_HOPS = 40
FORBIDDEN_TREES = ("/proc", "/sys", "/dev")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Root:
    name: str
    path: str  # real path, no symlinks
    given: str  # the configured absolute path (may contain symlinks): accepted in input too


@dataclass
class Opened:
    """An open file descriptor and the path the model would write for it."""

    fd: int
    display: str
    st: os.stat_result

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def workspace_roots() -> list[Root]:
    return roots_from_specs(settings.TOOLS_ALLOWED_DIRS)


def roots_from_specs(specs: Sequence[str]) -> list[Root]:
    """Roots from `path` or `name=path` specs: the tools' workspace, or another app's folders."""
    return list(_roots(tuple(specs)))


@lru_cache(maxsize=16)
def _roots(specs: tuple[str, ...]) -> tuple[Root, ...]:
    """Resolved once per setting: every tool call and every turn's tool descriptions use them."""
    roots = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path, name = spec, Path(spec.rstrip("/")).name or "root"
        given = Path(path).expanduser().absolute()
        given.mkdir(parents=True, exist_ok=True)  # created on first use
        roots.append(Root(name=name, path=os.path.realpath(given), given=str(given)))
    return tuple(roots)


def display_path(root: Root, parts: list[str], roots: list[Root]) -> str:
    relative = "/".join(parts) or "."
    if len(roots) == 1:
        return relative
    return root.name if not parts else f"{root.name}/{relative}"


def _split_input(raw: str, roots: list[Root]) -> tuple[Root | None, list[str]]:
    """Turn the model's path into (root, components); refuse every escaping spelling."""
    if "\x00" in raw:
        raise ToolError("Path contains a NUL byte.")
    if "\\" in raw or (len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha()):
        raise ToolError("Windows-style paths are not supported; use forward slashes, relative to the workspace.")
    if raw.startswith("~"):
        raise ToolError("'~' is not supported; paths are relative to the workspace.")
    if raw.startswith("/"):
        return _split_absolute(raw, roots)
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ToolError("Paths may not contain '..'; they are relative to the workspace.")
    if len(roots) == 1:
        return roots[0], parts
    if not parts:
        return None, []  # the list of roots
    by_name = {root.name: root for root in roots}
    if parts[0] not in by_name:
        raise ToolError(f"Unknown workspace {parts[0]!r}; paths start with one of: {', '.join(by_name)}.")
    return by_name[parts[0]], parts[1:]


def _split_absolute(raw: str, roots: list[Root]) -> tuple[Root, list[str]]:
    pure = PurePosixPath(raw)
    if ".." in pure.parts:
        raise ToolError("Paths may not contain '..'.")
    for root in roots:
        for base in (root.path, root.given):
            try:
                relative = pure.relative_to(base)
            except ValueError:
                continue
            return root, [p for p in relative.parts if p != "."]
    raise ToolError("Access denied: the path is outside the workspace.")


def _match_entry(dir_fd: int, name: str) -> str:
    """The directory entry that `name` means: itself, or its unique Unicode-normal-form twin."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return name
    except FileNotFoundError:
        pass
    wanted = unicodedata.normalize("NFC", name)
    matches = [entry for entry in os.listdir(dir_fd) if unicodedata.normalize("NFC", entry) == wanted]
    if len(matches) > 1:
        raise ToolError(f"{name!r} is ambiguous: several entries differ only in Unicode normalization.")
    if not matches:
        raise ToolError(f"Not found: {name}")
    return matches[0]


def _symlink_target(dir_fd: int, name: str, here: list[str], root: Root, roots: list[Root]) -> tuple[Root, list[str]]:
    target = os.readlink(name, dir_fd=dir_fd)
    if target.startswith("/"):
        base = PurePosixPath(os.path.normpath(target))
        for candidate in roots:
            try:
                relative = base.relative_to(candidate.path)
            except ValueError:
                continue
            return candidate, [p for p in relative.parts if p != "."]
        raise ToolError("Access denied: a symbolic link on the path points outside the workspace.")
    combined = os.path.normpath("/".join([*here, target]))
    if combined.startswith("..") or combined.startswith("/"):
        raise ToolError("Access denied: a symbolic link on the path points outside the workspace.")
    return root, [p for p in combined.split("/") if p not in ("", ".")]


def workspace_open_dir(raw: str) -> Opened | list[Root]:
    """Open a directory of the workspace; with several roots, the top is the list of roots."""
    roots = workspace_roots()
    root, parts = _split_input(raw.strip() or ".", roots)
    if root is None:
        return roots
    return _open(root, parts, roots, want="dir")


def workspace_open_file(raw: str) -> Opened:
    """Open a regular file of the workspace."""
    roots = workspace_roots()
    root, parts = _split_input(raw.strip() or ".", roots)
    if root is None:
        raise ToolError("The top of the workspace is not a file; give the path of a file inside a workspace.")
    return _open(root, parts, roots, want="file")


def open_file_in(root: Root, parts: list[str], roots: list[Root]) -> Opened:
    """Open a regular file of `root` by its path components, with every check `read_file` has
    (for apps that walk their own roots, such as the knowledge base's indexer)."""
    return _open(root, parts, roots, want="file")


def _open(root: Root, parts: list[str], roots: list[Root], *, want: str) -> Opened:
    hops = 0
    while True:
        result = _walk(root, parts, roots, want=want)
        if isinstance(result, Opened):
            _refuse_special_trees(result)
            return result
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            raise ToolError("Too many levels of symbolic links (a symlink loop?).")
        root, parts = result


def _walk(root: Root, parts: list[str], roots: list[Root], *, want: str) -> Opened | tuple[Root, list[str]]:
    """Open the path, or return where a symlink on it leads (to walk again from there)."""
    fd = os.open(root.path, _DIR_FLAGS)
    here: list[str] = []
    try:
        for index, part in enumerate(parts):
            name = _match_entry(fd, part)
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                new_root, new_parts = _symlink_target(fd, name, here, root, roots)
                return new_root, new_parts + parts[index + 1 :]
            last = index == len(parts) - 1
            if last and want == "file":
                return _open_final(fd, name, root, [*here, name], roots)
            try:
                next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise ToolError(f"Not a directory: {display_path(root, [*here, name], roots)}") from exc
                raise
            os.close(fd)
            fd = next_fd
            here.append(name)
        if want == "file":
            raise ToolError(f"Is a directory: {display_path(root, here, roots)}")
        opened = Opened(fd=fd, display=display_path(root, here, roots), st=os.fstat(fd))
        fd = -1
        return opened
    except PermissionError as exc:
        raise ToolError("Permission denied.") from exc
    finally:
        if fd >= 0:
            os.close(fd)


def _open_final(dir_fd: int, name: str, root: Root, parts: list[str], roots: list[Root]) -> Opened:
    display = display_path(root, parts, roots)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symlink since we looked
            raise ToolError("Access denied: the file was replaced by a symbolic link.") from exc
        if exc.errno == errno.ENXIO:  # a UNIX socket
            raise ToolError(f"Not a regular file: {display}") from exc
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ToolError(f"{display} is {kind}.")
    # A hard link is the same file as its other names, and one of them may be outside the
    # workspace (a link made to /etc/shadow's inode by anyone who can write here).
    if st.st_nlink > 1 and not settings.TOOLS_ALLOW_HARDLINKS:
        os.close(fd)
        raise ToolError(
            f"Access denied: {display} has {st.st_nlink} hard links, and another of its names may be outside "
            "the workspace (the operator can allow this with TOOLS_ALLOW_HARDLINKS)."
        )
    return Opened(fd=fd, display=display, st=st)


def _refuse_special_trees(opened: Opened) -> None:
    try:
        real = os.readlink(f"/proc/self/fd/{opened.fd}")
    except OSError:
        return  # no /proc here: nothing under it can be opened either
    if any(real == tree or real.startswith(tree + "/") for tree in FORBIDDEN_TREES):
        opened.close()
        raise ToolError("Access denied: system directories are never readable.")


def resolve_error(exc: OSError) -> ToolError:
    """A clear message for an OS error, with no host path in it."""
    messages = {
        errno.ENOENT: "Not found.",
        errno.EACCES: "Permission denied.",
        errno.ELOOP: "Too many levels of symbolic links.",
        errno.ENAMETOOLONG: "Path is too long.",
        errno.ENOTDIR: "Not a directory.",
    }
    code = exc.errno or 0
    return ToolError(messages.get(code, f"Cannot open the path ({errno.errorcode.get(code, 'error')})."))
