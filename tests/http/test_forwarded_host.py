"""X-Forwarded-Host names the bridge's host only where BRIDGE_TRUST_FORWARDED_HOST says a proxy sets it."""

from __future__ import annotations

from flask import Flask

from tests.conftest import AppFactory
from tests.http.test_admin_page import page, signed_in


def sources_page_with_forged_host(app: Flask) -> str:
    client = signed_in(app)
    client.environ_base.update({"HTTP_X_FORWARDED_HOST": "evil.example", "HTTP_X_FORWARDED_PROTO": "https"})
    return page(client, "/admin/sources")


def test_forwarded_host_is_ignored_unless_trusted(make_app: AppFactory) -> None:
    html = sources_page_with_forged_host(make_app())
    assert "https://localhost/hooks/api" in html  # X-Forwarded-Proto is still the proxy's word
    assert "evil.example" not in html

    trusted = sources_page_with_forged_host(make_app(BRIDGE_TRUST_FORWARDED_HOST="true"))
    assert "https://evil.example/hooks/api" in trusted
