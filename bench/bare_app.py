"""The floor: a bare Flask app with ``POST /hooks/<source>`` answering 200 ``{}``.

Run by bench/bench.py under gunicorn with the bridge's settings (bench/gunicorn_bare.py).
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/hooks/<source>")
def hook(source: str) -> tuple[dict[str, object], int]:
    request.get_data()  # read the body, as any real endpoint must
    return {}, 200


@app.get("/healthz")
def healthz() -> tuple[dict[str, object], int]:
    return {}, 200
