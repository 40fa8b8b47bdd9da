"""Write or check `requirements.lock`, the exact versions `make demo` and `make test` install.

`write` prints the lock of what this interpreter has installed (`make lock` runs it in
a venv resolved fresh from pyproject's ranges). `check` fails when this
interpreter has a package the lock does not name at the same version, so a lock that no
longer covers what an install pulls in is caught on the machine that installs it, not
later as a package that differs between machines.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"
HEADER = """\
# The exact versions CI ran: `make demo` and `make test` install with `-c` this file.
# Regenerate with `make lock`; an upgrade is a commit of its own whose CI run proves it.
# pyproject.toml keeps ranges for `pip install treegym` into an environment of your own.
"""


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed() -> dict[str, str]:
    """This interpreter's distributions (treegym itself left out), canonical name -> version."""
    found = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    found.pop("treegym", None)
    return found


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version
    return pins


def write() -> None:
    pins = sorted(installed().items())
    sys.stdout.write(HEADER + "".join(f"{name}=={version}\n" for name, version in pins))


def check() -> int:
    pins = read_lock()
    wrong = [f"{name} {version} (lock: {pins.get(name, 'absent')})"
             for name, version in sorted(installed().items()) if pins.get(name) != version]
    if wrong:
        print(f"installed packages differ from {LOCK.name}: {', '.join(wrong)}; "
              "rebuild the venv (rm -rf .venv), or if pyproject.toml changed, "
              "run `make lock` and commit the new lock", file=sys.stderr)
        return 1
    print(f"{len(installed())} packages installed, all as {LOCK.name} pins them")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["write"]:
        write()
    elif sys.argv[1:] == ["check"]:
        sys.exit(check())
    else:
        sys.exit("usage: lock.py write | lock.py check")
