"""Run an MCP server so that it dies with the backend worker that started it.

Started as `python -I -S launch.py <parent pid> <command> <args...>`: it asks the kernel to kill it
when its parent dies (Linux `PR_SET_PDEATHSIG`, which survives `exec`), then becomes the
server. A worker killed with SIGKILL cannot close its servers; without this they would outlive
it. Stand-alone on purpose: it runs in the server's stripped environment, without Django.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, command, args = int(sys.argv[1]), sys.argv[2], sys.argv[2:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit(1)
    try:
        os.execvp(command, args)  # noqa: S606 - an argument list, as the entry gave it
    except OSError as exc:
        print(f"cannot run {command!r}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
