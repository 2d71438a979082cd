"""The only module gunicorn and the flask CLI import: ``app = create_app()``."""

from __future__ import annotations

import sys

from bridge.app import create_app, help_only_app
from bridge.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    if "--help" not in sys.argv[1:]:
        # one line, no traceback, non-zero exit (docs/behaviour.md section 2)
        sys.exit(f"configuration error: {exc}")
    app = help_only_app(str(exc))
