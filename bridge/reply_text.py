"""The text a sender wrote anew in a reply, with the quoted earlier mail cut off.

quotequail finds where the earlier mail starts: an attribution line ("On … wrote:",
"Am … schrieb …:", "Le … a écrit :", and the Spanish, Dutch, Swedish, Portuguese and Russian
ones; Apple Mail's ``> On … wrote:`` too), Outlook's ``-----Original Message-----`` or line of
underscores, a block of ``From:``/``Sent:``/``To:``/``Subject:`` lines (``Von:``/``Gesendet:``/
``An:``/``Betreff:``, ``De:``/``Objet:``, …), a forwarded message, or a block of at least three
``>``-quoted lines. What is above it is the new text.

The library reads only the head of the body: MAX_LINES lines, at most MAX_CHARS characters.
Its work grows with the square of what it reads for some shapes a sender can choose (every
line that looks like a header makes it read all the lines after it; a long line with many
"… schrieb …" in it is matched in quadratic time): 100 KB of such text takes it a minute, the
head at most about a seventh of a second. The start of a quote lies within the
head for all but very long new texts; when it lies further down, the whole body is the new text.
"""

from __future__ import annotations

import logging

import quotequail

log = logging.getLogger("bridge.reply_text")

MAX_LINES = 500  # lines of the body read for the start of a quote
MAX_CHARS = 10_000  # characters read, whatever the lines


def new_text(body: str) -> str:
    """The new text of a reply: what is above the quoted earlier mail, stripped.

    The whole body, stripped, when no quote is found, when nothing is above it (a reply that
    only quotes, or one that starts with the quote), and when there is text below it too: an
    answer written between the quoted lines is kept whole rather than cut to its first part.
    Never raises.
    """
    whole = body.strip()
    try:
        head = body[:MAX_CHARS].replace("\r\n", "\n").replace("\r", "\n")
        found = quotequail.unwrap("\n".join(head.split("\n", MAX_LINES)[:MAX_LINES]))
    except Exception:  # the library on input it was not written for: keep the text as it is
        log.warning("quote detection failed; the whole text is kept", exc_info=True)
        return whole
    if not found or found.get("text_bottom"):
        return whole
    return found.get("text_top") or whole
