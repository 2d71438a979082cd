"""bridge/reply_text.py: the new text of a reply, as quotequail finds the quoted mail in it.

The fixtures are the text bodies that the common mail programs write when answering a
support mail (attribution lines wrapped as Gmail wraps them, Outlook's header blocks, Apple
Mail's quoted attribution).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import reply_text
from bridge.reply_text import new_text
from tests.providers.helpers import fixture


def body(name: str) -> str:
    return fixture("reply_text", name).decode("utf-8")


NEW_TEXT = {
    # the attribution wrapped over two lines, as Gmail's plain text part has it
    "gmail.txt": "Thanks, that fixed it. The export works again.\n\n"
    "One more question: can I export to CSV as well?\n\nAlice",
    # Outlook's header block with no separator line above it (its text part of an HTML reply)
    "outlook.txt": "Hello,\n\nthe invoice is attached again, as a PDF this time.\n\n"
    "Kind regards\nJürgen Müller\nBig Customer GmbH",
    "outlook_original.txt": "Please cancel order 1042, we ordered twice by mistake.\n\nThanks\nBob",
    "outlook_web.txt": "Yes, please go ahead.\n\nGet Outlook for iOS",
    "apple.txt": "Sounds good, Monday at 10 works for me.\n\nSent from my iPhone",
    "german_gmail.txt": "Hallo,\n\nvielen Dank, die Gutschrift ist angekommen.\n\nViele Grüße\nJürgen",
    "german_outlook.txt": "Bitte stornieren.\n\nGruß\nJürgen",
    "french_gmail.txt": "Bonjour,\n\nmerci, c'est réglé.\n\nFrançois",
    # quoted lines without an attribution above them
    "bare_quote.txt": "Yes, that is the right address.",
}


@pytest.mark.parametrize("name", list(NEW_TEXT))
def test_the_quoted_mail_is_cut(name: str) -> None:
    assert new_text(body(name)) == NEW_TEXT[name]


def test_a_reply_with_windows_line_ends_is_cut_the_same() -> None:
    assert new_text(body("gmail.txt").replace("\n", "\r\n")) == NEW_TEXT["gmail.txt"]


def test_a_mail_that_quotes_nothing_is_kept_as_written() -> None:
    """Not even the indentation of its lines is touched (inscriptis indents HTML mail's lists)."""
    text = body("not_a_reply.txt")
    assert "\n    * the lid is cracked\n" in text
    assert new_text(text) == text.strip()


def test_a_reply_with_nothing_new_is_kept_whole() -> None:
    text = body("nothing_new.txt")
    assert text.startswith("On Wed, Nov 25, 2026")
    assert new_text(text) == text.strip()


@pytest.mark.parametrize("name", ["inline.txt", "inline_greeting.txt"])
def test_an_answer_between_the_quoted_lines_is_kept_whole(name: str) -> None:
    """quotequail finds the attribution; with nothing above it (inline.txt) there is no new text
    to give, and with a greeting above it (inline_greeting.txt) it reports text below the quote:
    either way the whole body is kept, so that the answers are not lost."""
    text = body(name)
    assert "Firefox 140 on Windows." in text
    assert new_text(text) == text.strip()


def test_a_quote_that_starts_past_the_head_is_not_looked_for() -> None:
    """Only the head is read (reply_text.MAX_CHARS): a longer new text keeps its quote."""
    long_reply = "A long report.\n" * (reply_text.MAX_CHARS // 15 + 1) + "\n" + body("gmail.txt")
    assert new_text(long_reply) == long_reply.strip()
    short_reply = "A long report.\n" * 20 + "\n" + body("gmail.txt")
    assert new_text(short_reply).endswith("CSV as well?\n\nAlice")


def test_the_library_failing_keeps_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> None:
        raise RuntimeError("a bug in the library")

    monkeypatch.setattr(reply_text.quotequail, "unwrap", broken)
    assert new_text(" " + body("gmail.txt")) == body("gmail.txt").strip()


# what the library looks for, to be put together in any order
PIECES = ["a", " ", "\n", "\r", "> ", ">", "On x wrote:", "Am x schrieb y:", "From: x", "Sent: y", "-----", "\udcff"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60).map("".join))
def test_any_text_gives_its_whole_or_a_part_of_it(text: str) -> None:
    result = new_text(text)
    assert result == text.strip() or (result and result in text.replace("\r\n", "\n").replace("\r", "\n"))


@given(st.text())
def test_any_unicode_text_is_answered(text: str) -> None:
    assert isinstance(new_text(text), str)


# Shapes that make the library's work grow with the square of its input, a megabyte of each.
HUGE = {
    "header-like lines": "From: a\n" * 125_000,
    "colons": "a: b\n" * 200_000,
    "quoted and plain lines": ">\nx\n" * 250_000,
    "one line of German attributions": "Am " + " schrieb x" * 100_000,
    "one line of Dutch attributions": "Op " + " heeft x geschreven" * 52_000,
    "a reply over a megabyte of quote": body("gmail.txt") + "> quoted text of the earlier mail\n" * 30_000,
}


@pytest.mark.parametrize("name", list(HUGE))
def test_a_megabyte_is_read_in_well_under_a_second(name: str) -> None:
    started = time.perf_counter()
    new_text(HUGE[name])
    assert time.perf_counter() - started < 0.5
