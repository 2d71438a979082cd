"""gunicorn settings for bench/bare_app.py: every setting of gunicorn.conf.py (workers, threads,
worker_class, reuse_port, timeouts, keep-alive, access log) except its hooks, which check and
start the bridge. tests/test_gunicorn_conf.py serves its own app with these settings too.

The port comes from BENCH_BARE_PORT.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))  # the worker class is the bridge's own (bridge/server.py), whatever --chdir says
_HOOKS = {"on_starting", "post_worker_init", "child_exit", "worker_exit"}
_settings = runpy.run_path(str(_ROOT / "gunicorn.conf.py"))
for _name, _value in _settings.items():
    if not _name.startswith("_") and _name not in _HOOKS and isinstance(_value, int | float | str | bool):
        globals()[_name] = _value

bind = f"127.0.0.1:{os.environ['BENCH_BARE_PORT']}"
