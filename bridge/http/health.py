"""Open endpoints: liveness, readiness and the OpenAPI description."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from bridge.http.openapi import openapi_spec
from bridge.runtime import get_runtime

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> Response:
    get_runtime().store.ping()  # StoreUnavailable -> 503
    return jsonify({"status": "ready"})


@health.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_spec())
