"""``python -m tests.support.netns_exec NETNS [--user NAME] -- ARGV...``: exec ARGV inside network namespace
NETNS (a name under /run/netns; ``-``: stay), as user NAME when given (Postgres refuses to run as root).
Needs only Python and libc, unlike ``ip netns exec`` + ``setpriv``."""
from __future__ import annotations

import os
import pwd
import sys

from tests.support.netns import enter


def main(args: list[str]) -> None:
    netns, rest = args[0], args[1:]
    user = None
    if rest[:1] == ["--user"]:
        user, rest = rest[1], rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if netns != "-":
        enter(netns)  # one thread here: the process is in it
    if user:
        entry = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        os.environ["HOME"] = entry.pw_dir
    os.execvp(rest[0], rest)


if __name__ == "__main__":
    main(sys.argv[1:])
