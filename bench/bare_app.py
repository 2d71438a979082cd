"""The floors for accepting, served by bench/bench.py under the bridge's gunicorn settings
(bench/gunicorn_bare.py):

- ``POST /hooks/<source>`` reads the body and answers 200 ``{}``: Flask and gunicorn alone;
- ``POST /insert/<database>`` validates the JSON body with a marshmallow schema and inserts one
  row into ``bench_bare_events`` of the database named by ``BENCH_BARE_DB_<DATABASE>`` (the
  bridge's own database in the same run, on an engine made as the bridge makes its own with
  ``bridge.db.make_engine``: SQLite's WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``), then
  answers 200 with the row's id: Flask, marshmallow and one insert, with none of the bridge's
  work in between.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from flask import Flask, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, Text

from bridge.db import make_engine, normalize_url

app = Flask(__name__)

metadata = MetaData()
rows = Table(
    "bench_bare_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("email", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class Hook(Schema):
    class Meta:
        unknown = EXCLUDE

    email = fields.Email(required=True)
    name = fields.String()
    subject = fields.String(required=True)
    message = fields.String(required=True)


schema = Hook()
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine_for(database: str) -> Engine | None:
    with _lock:
        if database in _engines:
            return _engines[database]
        url = os.environ.get(f"BENCH_BARE_DB_{database.upper()}")
        if not url:
            return None
        # the bridge's own engine settings (bridge/db.py): the same pragmas and pool, nothing of its work
        engine = make_engine(normalize_url(url, ""), pool_size=4)
        metadata.create_all(engine, checkfirst=True)
        _engines[database] = engine
        return engine


@app.post("/hooks/<source>")
def hook(source: str) -> tuple[dict[str, object], int]:
    request.get_data()  # read the body, as any real endpoint must
    return {}, 200


@app.post("/insert/<database>")
def insert(database: str) -> tuple[dict[str, object], int]:
    engine = engine_for(database)
    if engine is None:
        return {"error": f"no database {database}"}, 404
    try:
        data = schema.load(request.get_json(force=True, silent=True) or {})
    except ValidationError as exc:
        return {"error": exc.messages}, 400
    with engine.begin() as conn:
        row = conn.execute(
            rows.insert().values(
                source=database,
                email=data["email"],
                subject=data["subject"],
                message=data["message"],
                created_at=datetime.now(UTC),
            )
        )
    return {"id": row.inserted_primary_key[0]}, 200


@app.get("/healthz")
def healthz() -> tuple[dict[str, object], int]:
    return {}, 200
