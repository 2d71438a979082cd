"""The .env file of `make run` (scripts/run-local.sh), read and written with python-dotenv.

``exports FILE`` prints ``export KEY=value`` lines for the keys of FILE not already in the
environment (the shell wins, as with the flask CLI's own loading of .env).
``write EXAMPLE FILE`` writes FILE from EXAMPLE, each active line with the value this run uses
(the environment's), so the CLI in a second shell talks to the same sandbox and database.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from dotenv import dotenv_values

ASSIGNMENT = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=")


def exports(path: str) -> str:
    values = dotenv_values(path)
    return "".join(
        f"export {key}={shlex.quote(value)}\n"
        for key, value in values.items()
        if value is not None and key not in os.environ
    )


def write(example: str, path: str) -> None:
    lines = []
    for line in Path(example).read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match and os.environ.get(match["key"]):
            line = f"{match['key']}={os.environ[match['key']]}"
        lines.append(line)
    Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "exports":
        sys.stdout.write(exports(*args))
    elif command == "write":
        write(*args)
    else:
        sys.exit(f"unknown command {command!r}")
