"""Scenario 2b: the same ~20 kB Mailgun multipart body parsed by Werkzeug's form parser (what the
bridge uses, through Flask's ``request.form``), python-multipart and streaming-form-data, in
this process, one after the other, in interleaved rounds: microseconds per body.

The two others are what a faster multipart parser would be taken from. Each parser reads every
part of the body into memory, as the bridge needs them: Werkzeug and python-multipart find the
parts by themselves; streaming-form-data parses only the parts registered by name beforehand
(every name in the body is registered here), which a webhook whose field names vary
(``attachment-1``, ``attachment-2``, ...) could not do without reading the body first.
"""

from __future__ import annotations

import io
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import python_multipart
from loadgen import part
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import ValueTarget
from werkzeug.formparser import parse_form_data

PARSERS = ("werkzeug", "python-multipart", "streaming-form-data")


def body_of(boundary: str, prefix: bytes, suffix: bytes) -> bytes:
    """One whole body: the bench's two static parts around the four per-request fields."""
    dynamic = {"timestamp": "1733390000", "token": "t" * 50, "signature": "s" * 64, "Message-Id": "<b@example.com>"}
    return prefix + b"".join(part(boundary, k, v) for k, v in dynamic.items()) + suffix


def _werkzeug(body: bytes, content_type: str) -> int:
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    _, form, files = parse_form_data(environ)
    return len(form) + sum(len(f.read()) > 0 for f in files.values())


def _python_multipart(body: bytes, content_type: str) -> int:
    parts: dict[str, Any] = {}

    def on_field(field: Any) -> None:
        parts[field.field_name] = field.value

    def on_file(file: Any) -> None:
        file.file_object.seek(0)
        parts[file.field_name] = file.file_object.read()

    headers = {"Content-Type": content_type.encode(), "Content-Length": str(len(body)).encode()}
    python_multipart.parse_form(headers, io.BytesIO(body), on_field, on_file)
    return len(parts)


def _streaming_form_data(body: bytes, content_type: str) -> int:
    parser = StreamingFormDataParser(headers={"Content-Type": content_type})
    names = {
        name.decode() for name in re.findall(rb'\r\nContent-Disposition: form-data; name="([^"]+)"', b"\r\n" + body)
    }
    targets = {name: ValueTarget() for name in names}
    for name, target in targets.items():
        parser.register(name, target)
    parser.data_received(body)
    return sum(1 for t in targets.values() if t.value)


def compare(body: bytes, content_type: str, rounds: int = 5, per_round: int = 200) -> dict[str, Any]:
    """Microseconds per body for each parser (median of ``rounds``, with the spread), and the
    number of parts each found (the three must agree)."""
    parsers: dict[str, Callable[[bytes, str], int]] = {
        "werkzeug": _werkzeug,
        "python-multipart": _python_multipart,
        "streaming-form-data": _streaming_form_data,
    }
    found = {name: parse(body, content_type) for name, parse in parsers.items()}  # also a warm-up
    times: dict[str, list[float]] = {name: [] for name in parsers}
    for _ in range(rounds):
        for name, parse in parsers.items():
            started = time.perf_counter()
            for _ in range(per_round):
                parse(body, content_type)
            times[name].append(1e6 * (time.perf_counter() - started) / per_round)
    return {
        "body_bytes": len(body),
        "parts_found": found,
        "us_per_body": {name: round(statistics.median(t), 1) for name, t in times.items()},
        "spread_us": {name: [round(min(t), 1), round(max(t), 1)] for name, t in times.items()},
    }
