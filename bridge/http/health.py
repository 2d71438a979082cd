"""Operations endpoints: liveness, readiness and the OpenAPI description (open), metrics (admin token)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.http.admin_api import check_admin_token
from bridge.http.openapi import openapi_spec
from bridge.metrics import render
from bridge.runtime import get_runtime

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> Response:
    get_runtime().store.ping()  # StoreUnavailable -> 503
    return jsonify({"status": "ready"})


@health.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; the admin bearer token, as scrapers can send one."""
    runtime = get_runtime()
    check_admin_token(runtime.settings.admin_token)
    return Response(render(runtime.store), mimetype="text/plain", headers={"Content-Type": CONTENT_TYPE_LATEST})


@health.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_spec())
