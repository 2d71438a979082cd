"""bridge/sources.py: the sources file (docs/behaviour.md section 3); every error is ONE line naming file,
source and key."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Template

from bridge.providers import PROVIDERS
from bridge.sources import KindInfo, RateLimit, SourcesConfig, load_sources
from config.settings import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FakeKind:
    requires_secret: bool
    options: tuple[str, ...] = ("level",)

    def validate_options(self, options: Mapping[str, Any]) -> None:
        if "level" in options and options["level"] not in (1, 2):
            raise ValueError("level: must be 1 or 2")

    def validate_secret(self, secret: str) -> None:
        if secret == "bad-secret":
            raise ValueError("is bad")


SIGNED: dict[str, KindInfo] = {"signed": FakeKind(requires_secret=True), "json": FakeKind(requires_secret=False)}


def write(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "sources.yml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def load(
    tmp_path: Path,
    text: str | bytes,
    env: Mapping[str, str] | None = None,
    kinds: Mapping[str, KindInfo] = PROVIDERS,
) -> SourcesConfig:
    return load_sources(write(tmp_path, text), kinds, env or {})


def error(tmp_path: Path, text: str | bytes, env: Mapping[str, str] | None = None, **kw: Mapping[str, KindInfo]) -> str:
    """The ConfigError line, with the file path replaced by ``F``."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sources(path, kw.get("kinds", PROVIDERS), env or {})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    return message.replace(path, "F", 1)


# --- file-level errors ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yml")
    with pytest.raises(ConfigError) as info:
        load_sources(path, PROVIDERS, {})
    assert str(info.value) == f"{path}: cannot read (No such file or directory)"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    text = "sources:\n  a:\n    kind: json\n    ticket: {subject: [oops}\n"
    assert error(tmp_path, text) == "F: line 4 invalid YAML (expected ',' or ']', but got '}')"


def test_bad_yaml_tab_indent(tmp_path: Path) -> None:
    text = "sources:\n  a:\n\tkind: json\n"
    message = error(tmp_path, text)
    assert message.startswith("F: line 3 invalid YAML (")


def test_control_character_is_one_line(tmp_path: Path) -> None:
    message = error(tmp_path, b"sources:\n  a:\n    kind: json\x01\n")
    assert message == "F: line 3 invalid YAML (character #x0001: special characters are not allowed)"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    assert set(load(tmp_path, "\ufeffsources:\n  a: {kind: json}\n").sources) == {"a"}


def test_not_utf8(tmp_path: Path) -> None:
    assert error(tmp_path, b"sources:\n  a:\n    kind: \xffjson\n") == "F: line 3 not UTF-8 text"


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n", "42\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert error(tmp_path, text) == "F: must be a mapping with a 'sources' key"


def test_missing_sources(tmp_path: Path) -> None:
    assert error(tmp_path, "defaults: {user_id: 1}\n") == "F: sources: Missing data for required field."


def test_sources_not_a_mapping(tmp_path: Path) -> None:
    assert error(tmp_path, "sources: [a, b]\n") == "F: sources: Not a valid mapping type."


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert error(tmp_path, "sources: {}\nsauces: {}\n") == "F: sauces: Unknown field."


def test_defaults_user_id_must_be_an_integer(tmp_path: Path) -> None:
    assert error(tmp_path, "defaults: {user_id: one}\nsources: {}\n") == "F: defaults.user_id: Not a valid integer."
    assert error(tmp_path, "defaults: {user_id: '1'}\nsources: {}\n") == "F: defaults.user_id: Not a valid integer."
    assert error(tmp_path, "defaults: {user_id: true}\nsources: {}\n") == "F: defaults.user_id: Not a valid integer."


def test_unknown_defaults_key(tmp_path: Path) -> None:
    assert error(tmp_path, "defaults: {user: 1}\nsources: {}\n") == "F: defaults.user: Unknown field."


# --- per-source errors ---------------------------------------------------------------------------


def test_source_not_a_mapping(tmp_path: Path) -> None:
    assert error(tmp_path, "sources:\n  a: json\n") == "F: sources.a: must be a mapping with at least 'kind'"


def test_source_name_checked(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  'a/b': {kind: json}\n")
    assert message == "F: sources.a/b: a source name may hold letters, digits, '_', '-', '.'"


def test_missing_kind(tmp_path: Path) -> None:
    assert error(tmp_path, "sources:\n  a: {secret: x}\n") == "F: sources.a.kind: Missing data for required field."


def test_unknown_kind_lists_known_kinds(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  a: {kind: mailgunn}\n")
    known = ", ".join(sorted(PROVIDERS))
    assert message == f"F: sources.a.kind: unknown kind 'mailgunn' (known: {known})"


def test_unknown_key(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  a: {kind: json, honeypot: x}\n")
    assert message == "F: sources.a.honeypot: unknown key for kind 'json'"


def test_kind_option_is_accepted_and_kept(tmp_path: Path) -> None:
    kinds = {"form": FakeKind(requires_secret=False, options=("honeypot",))}
    config = load(tmp_path, "sources:\n  a: {kind: form, honeypot: website}\n", kinds=kinds)
    assert config.sources["a"].options == {"honeypot": "website"}


def test_unset_variable_names_variable_and_key(tmp_path: Path) -> None:
    text = "sources:\n  api: {kind: json, secret: '${API_TOKEN}'}\n"
    assert error(tmp_path, text) == "F: sources.api.secret: environment variable API_TOKEN is not set or empty"


def test_unset_variable_in_a_ticket_list(tmp_path: Path) -> None:
    text = "sources:\n  api:\n    kind: json\n    ticket: {tags: [a, '${TAG}']}\n"
    assert error(tmp_path, text) == "F: sources.api.ticket.tags.1: environment variable TAG is not set or empty"


def test_template_syntax_error(tmp_path: Path) -> None:
    text = "sources:\n  a:\n    kind: json\n    ticket: {subject: '{{ subject }'}\n"
    assert error(tmp_path, text) == "F: sources.a.ticket.subject: template error on line 1: unexpected '}'"


def test_template_syntax_error_in_metadata_names_the_entry(tmp_path: Path) -> None:
    text = "sources:\n  a:\n    kind: json\n    ticket:\n      metadata: {page: '{% if %}'}\n"
    message = error(tmp_path, text)
    assert message.startswith("F: sources.a.ticket.metadata.page: template error on line 1: ")


def test_redirect_on_a_non_form_source(tmp_path: Path) -> None:
    text = "sources:\n  a: {kind: json, redirect: 'https://example.com/thanks'}\n"
    assert error(tmp_path, text) == "F: sources.a.redirect: only 'form' sources redirect"


def test_redirect_must_be_a_url(tmp_path: Path) -> None:
    assert (
        error(tmp_path, "sources:\n  a: {kind: form, redirect: thanks}\n") == "F: sources.a.redirect: Not a valid URL."
    )


@pytest.mark.parametrize(
    ("clients", "expected"),
    [
        ("{alice@example.com: twelve}", "sources.a.clients.alice@example.com: Not a valid integer."),
        ("{alice@example.com: '12'}", "sources.a.clients.alice@example.com: Not a valid integer."),
        ("{alice@example.com: true}", "sources.a.clients.alice@example.com: Not a valid integer."),
        ("{alice@example.com: 1.5}", "sources.a.clients.alice@example.com: Not a valid integer."),
        ("{example.com: 3}", "sources.a.clients.example.com: must be an email address or @domain"),
        ("{'alice@': 3}", "sources.a.clients.alice@: must be an email address or @domain"),
        ("[alice@example.com]", "sources.a.clients: Not a valid mapping type."),
    ],
)
def test_bad_source_clients(tmp_path: Path, clients: str, expected: str) -> None:
    assert error(tmp_path, f"sources:\n  a: {{kind: json, clients: {clients}}}\n") == f"F: {expected}"


def test_bad_top_level_clients(tmp_path: Path) -> None:
    text = "clients:\n  '@bigcustomer.com': x\nsources: {}\n"
    assert error(tmp_path, text) == "F: clients.@bigcustomer.com: Not a valid integer."
    text = "clients:\n  bigcustomer.com: 3\nsources: {}\n"
    assert error(tmp_path, text) == "F: clients.bigcustomer.com: must be an email address or @domain"


def test_signed_kind_without_secret(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  hook: {kind: signed}\n", kinds=SIGNED)
    assert message == "F: sources.hook.secret: kind 'signed' needs a secret"


def test_a_variable_set_empty_counts_as_unset(tmp_path: Path) -> None:
    text = "sources:\n  hook: {kind: json, secret: '${HOOK_SECRET}'}\n"
    message = error(tmp_path, text, {"HOOK_SECRET": ""})
    assert message == "F: sources.hook.secret: environment variable HOOK_SECRET is not set or empty"


def test_signed_kind_with_secret(tmp_path: Path) -> None:
    text = "sources:\n  hook: {kind: signed, secret: '${HOOK_SECRET}'}\n"
    config = load(tmp_path, text, {"HOOK_SECRET": "whsec_abc"}, kinds=SIGNED)
    assert config.sources["hook"].secret == "whsec_abc"
    assert config.secrets() == ["whsec_abc"]
    assert "whsec_abc" not in repr(config.sources["hook"])


def test_unknown_ticket_key(tmp_path: Path) -> None:
    text = "sources:\n  a:\n    kind: json\n    ticket: {priority: high}\n"
    message = error(tmp_path, text)
    assert message == (
        "F: sources.a.ticket.priority: Must be one of: "
        "user_id, subject, note, message, tags, employees, status, order, metadata."
    )


@pytest.mark.parametrize(
    ("ticket", "expected"),
    [
        ("{tags: website}", "sources.a.ticket.tags: must be a list"),
        ("{employees: 3}", "sources.a.ticket.employees: must be a list"),
        ("{metadata: [a]}", "sources.a.ticket.metadata: must be a mapping of names to values"),
        ("{subject: [a, b]}", "sources.a.ticket.subject: must be a single value"),
        ("{note: {a: b}}", "sources.a.ticket.note: must be a single value"),
        ("{tags: [a, [b]]}", "sources.a.ticket.tags.1: must be a single value"),
        ("{metadata: {a: {b: c}}}", "sources.a.ticket.metadata.a: must be a single value"),
        ("{status: true}", "sources.a.ticket.status: must be a whole number or a template, got True"),
        ("{user_id: 1.5}", "sources.a.ticket.user_id: must be a whole number or a template, got 1.5"),
        ("{employees: [3, 1.5]}", "sources.a.ticket.employees.1: must be a whole number or a template, got 1.5"),
        ("{order: 2024-01-02}", "sources.a.ticket.order: unsupported value datetime.date(2024, 1, 2)"),
    ],
)
def test_bad_ticket_values(tmp_path: Path, ticket: str, expected: str) -> None:
    assert error(tmp_path, f"sources:\n  a:\n    kind: json\n    ticket: {ticket}\n") == f"F: {expected}"


# --- what loads ----------------------------------------------------------------------------------


def test_variable_default_used_when_unset(tmp_path: Path) -> None:
    config = load(tmp_path, "sources:\n  a: {kind: json, secret: '${A_TOKEN:-fallback}'}\n")
    assert config.sources["a"].secret == "fallback"


def test_variable_set_wins_over_default(tmp_path: Path) -> None:
    config = load(tmp_path, "sources:\n  a: {kind: json, secret: '${A_TOKEN:-fallback}'}\n", {"A_TOKEN": "real"})
    assert config.sources["a"].secret == "real"


def test_variables_expand_inside_text_and_are_not_re_expanded(tmp_path: Path) -> None:
    text = "sources:\n  a:\n    kind: json\n    secret: 'pre-${A}-${B:-b}-post'\n"
    config = load(tmp_path, text, {"A": "${B}"})
    assert config.sources["a"].secret == "pre-${B}-b-post"


def test_clients_are_lowercased(tmp_path: Path) -> None:
    text = """
        defaults: {user_id: 1}
        clients:
          Alice@Example.COM: 12
          "@BigCustomer.com": 30
        sources:
          a:
            kind: json
            clients: {" Bob@Example.com ": 5, "@Partner.IO": 6}
          b: {kind: json, clients: {}}
          c: {kind: json}
    """
    config = load(tmp_path, text)
    assert config.clients == {"alice@example.com": 12, "@bigcustomer.com": 30}
    assert config.default_user_id == 1
    assert config.sources["a"].clients == {"bob@example.com": 5, "@partner.io": 6}
    assert config.sources["b"].clients == {}
    assert config.sources["c"].clients is None


def test_full_source_loads(tmp_path: Path) -> None:
    text = """
        sources:
          contact:
            kind: form
            secret: s3cret
            redirect: https://example.com/thanks
            email_field: customer.email
            name_field: who
            subject_field: topic
            body_field: text
            ticket:
              user_id: 5
              subject: "Website: {{ subject }}"
              note: "{{ body }}"
              tags: [website, 7]
              employees: [3, "{{ fields.emp }}"]
              status: 1
              order: 123456
              metadata: {campaign: "{{ fields.utm_campaign }}", fixed: 2}
    """
    source = load(tmp_path, text).sources["contact"]
    assert (source.name, source.kind, source.secret, source.redirect) == (
        "contact",
        "form",
        "s3cret",
        "https://example.com/thanks",
    )
    assert (source.email_field, source.name_field, source.subject_field, source.body_field) == (
        "customer.email",
        "who",
        "topic",
        "text",
    )
    ticket = source.ticket
    assert ticket["user_id"] == 5 and ticket["status"] == 1 and ticket["order"] == 123456
    assert isinstance(ticket["subject"], Template) and isinstance(ticket["note"], Template)
    assert isinstance(ticket["tags"][0], Template) and ticket["tags"][1] == 7
    assert ticket["employees"][0] == 3 and isinstance(ticket["employees"][1], Template)
    assert isinstance(ticket["metadata"]["campaign"], Template) and ticket["metadata"]["fixed"] == 2


def test_empty_ticket_is_allowed(tmp_path: Path) -> None:
    config = load(tmp_path, "sources:\n  a:\n    kind: json\n    ticket:\n")
    assert config.sources["a"].ticket == {}


def test_shipped_sources_file_loads() -> None:
    config = load_sources(str(ROOT / "config" / "sources.yml"), PROVIDERS, {"API_TOKEN": "t0ken"})
    assert set(config.sources) == {"contact", "api", "mail"}
    assert (config.sources["mail"].kind, config.sources["mail"].secret) == ("email", "t0ken")
    assert config.sources["api"].secret == "t0ken"
    assert config.sources["contact"].redirect == "https://example.com/thanks"
    assert config.clients == {"alice@example.com": 12, "@bigcustomer.com": 30}
    assert config.default_user_id == 1


def test_shipped_sources_file_needs_api_token() -> None:
    path = str(ROOT / "config" / "sources.yml")
    with pytest.raises(ConfigError) as info:
        load_sources(path, PROVIDERS, {})
    assert str(info.value) == f"{path}: sources.api.secret: environment variable API_TOKEN is not set or empty"


def test_a_kinds_own_options_are_checked_at_start_up(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  hook: {kind: json, level: 3}\n", kinds=SIGNED)
    assert message == "F: sources.hook.level: must be 1 or 2"
    config = load(tmp_path, "sources:\n  hook: {kind: json, level: 2}\n", kinds=SIGNED)
    assert config.sources["hook"].options == {"level": 2}


def test_a_kinds_secret_shape_is_checked_at_start_up(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  hook: {kind: signed, secret: bad-secret}\n", kinds=SIGNED)
    assert message == "F: sources.hook.secret: is bad"


@pytest.mark.parametrize(
    "kind, secret, problem",
    [
        ("standard", "not-base64!", "is not a Standard Webhooks secret (whsec_ followed by base64)"),
        ("postmark", "no-colon", "must be user:pass, the HTTP Basic credentials put in the webhook URL"),
    ],
)
def test_real_kinds_check_their_secret(tmp_path: Path, kind: str, secret: str, problem: str) -> None:
    message = error(tmp_path, f"sources:\n  hook: {{kind: {kind}, secret: '{secret}'}}\n")
    assert message == f"F: sources.hook.secret: {problem}"


# --- secrets that are written but could not protect the source -----------------------------------


@pytest.mark.parametrize("secret", ["''", "'   '", "", "'${HOOK_SECRET:-}'", "'${HOOK_SECRET:-  }'"])
def test_an_empty_secret_is_refused_not_ignored(tmp_path: Path, secret: str) -> None:
    message = error(tmp_path, f"sources:\n  hook:\n    kind: json\n    secret: {secret}\n")
    assert message == (
        "F: sources.hook.secret: is empty, which would accept posts from anyone; remove the key if that is meant"
    )


def test_a_blank_secret_on_a_kind_that_needs_one(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  survey: {kind: typeform, secret: ' '}\n")
    assert message == "F: sources.survey.secret: is empty, and kind 'typeform' needs a secret"


def test_a_secret_too_short_to_be_redacted_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, "sources:\n  hook: {kind: json, secret: abc}\n")
    assert message == (
        "F: sources.hook.secret: is 3 character(s); use at least 4,"
        " as a shorter secret would not be kept out of the logs"
    )
    assert load(tmp_path, "sources:\n  hook: {kind: json, secret: abcd}\n").sources["hook"].secret == "abcd"


@pytest.mark.parametrize("kind", ["postmark", "sendgrid", "cloudmailin"])
@pytest.mark.parametrize("secret", ["user:", ":password", "  :password", "user:   "])
def test_basic_credentials_need_a_user_and_a_password(tmp_path: Path, kind: str, secret: str) -> None:
    message = error(tmp_path, f"sources:\n  mail: {{kind: {kind}, secret: '{secret}'}}\n")
    assert message == "F: sources.mail.secret: user:pass needs both a user and a password"


@pytest.mark.parametrize("kind", ["postmark", "sendgrid", "cloudmailin"])
def test_basic_credentials_of_a_lone_colon_are_refused(tmp_path: Path, kind: str) -> None:
    assert error(tmp_path, f"sources:\n  mail: {{kind: {kind}, secret: ':'}}\n").startswith("F: sources.mail.secret: ")
    # a colon means user:pass only to Basic kinds; elsewhere it is one more character
    assert load(tmp_path, "sources:\n  api: {kind: json, secret: ':token'}\n").sources["api"].secret == ":token"


# --- a key written twice -------------------------------------------------------------------------


def test_a_source_written_twice_is_refused(tmp_path: Path) -> None:
    text = """\
        sources:
          api:
            kind: json
          contact:
            kind: form
          api:
            kind: form
    """
    assert error(tmp_path, text) == "F: sources.api: written twice (lines 2 and 6); only the last would count"
    # a key brought in by a << merge may still be overridden: that is what a merge is for
    merged = """\
        sources:
          a: &base
            kind: json
            ticket: {tags: [x]}
          b:
            <<: *base
            ticket: {tags: [y]}
    """
    config = load(tmp_path, merged)
    assert config.sources["a"].ticket["tags"][0].render() == "x"
    assert config.sources["b"].ticket["tags"][0].render() == "y"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: {}\nsources: {a: {kind: json}}\n", "sources: written twice (lines 1 and 2)"),
        (
            "sources:\n  a:\n    kind: json\n    ticket: {tags: [x]}\n    ticket: {tags: [y]}\n",
            "sources.a.ticket: written twice (lines 4 and 5)",
        ),
        (
            "sources:\n  a:\n    kind: json\n    ticket:\n      metadata: {page: x, 'page': y}\n",
            "sources.a.ticket.metadata.page: written twice on line 5",
        ),
        (
            "clients:\n  alice@example.com: 1\n  alice@example.com: 2\nsources: {}\n",
            "clients.alice@example.com: written twice (lines 2 and 3)",
        ),
        ("defaults: {user_id: 1, user_id: 2}\nsources: {}\n", "defaults.user_id: written twice on line 1"),
    ],
)
def test_a_key_written_twice_anywhere_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text) == f"F: {expected}; only the last would count"


# --- literal ticket values SPP needs as integers ------------------------------------------------


@pytest.mark.parametrize(
    ("ticket", "expected"),
    [
        ("{status: open}", "sources.a.ticket.status: must be a whole number or a template, got 'open'"),
        ("{status: '1.5'}", "sources.a.ticket.status: must be a whole number or a template, got '1.5'"),
        ("{user_id: alice}", "sources.a.ticket.user_id: must be a whole number or a template, got 'alice'"),
        ("{employees: [3, bob]}", "sources.a.ticket.employees.1: must be a whole number or a template, got 'bob'"),
        ("{status: '{# a comment #}x'}", "sources.a.ticket.status: must be a whole number or a template, got 'x'"),
    ],
)
def test_a_literal_that_is_not_an_integer_is_refused(tmp_path: Path, ticket: str, expected: str) -> None:
    assert error(tmp_path, f"sources:\n  a:\n    kind: json\n    ticket: {ticket}\n") == f"F: {expected}"


def test_only_literals_are_checked_at_start_up(tmp_path: Path) -> None:
    accepted = [
        "{status: '2', user_id: ' 5 ', employees: ['3']}",
        "{status: ''}",
        "{status: '{{ fields.status }}'}",
        "{status: 'x{{ fields.status }}'}",  # a template: checked per event
        "{user_id: '{% if email %}7{% endif %}'}",
        "{order: open, tags: [open], metadata: {status: open}}",  # not integer keys
    ]
    for ticket in accepted:
        load(tmp_path, f"sources:\n  a:\n    kind: json\n    ticket: {ticket}\n")
    assert error(tmp_path, "sources:\n  a:\n    kind: json\n    ticket: {status: open}\n").startswith(
        "F: sources.a.ticket"
    )


# --- per-source limits ------------------------------------------------------------------------


def test_limits_load(tmp_path: Path) -> None:
    config = load_sources(
        write(
            tmp_path,
            """
            sources:
              a: {kind: json, rate_limit: 10/minute, max_body_bytes: 65536}
              b: {kind: form, rate_limit: " 1 / hour", max_body_bytes: "${SIZE}"}
              c: {kind: json, rate_limit: 3/second}
              d: {kind: json}
            """,
        ),
        PROVIDERS,
        {"SIZE": "1000"},
        max_body_bytes=65536,
    )
    a, b, c, d = (config.sources[name] for name in "abcd")
    assert (a.rate_limit, a.max_body_bytes) == (RateLimit(10, 60, "10/minute"), 65536)
    assert (b.rate_limit, b.max_body_bytes) == (RateLimit(1, 3600, "1/hour"), 1000)
    assert c.rate_limit == RateLimit(3, 1, "3/second")
    assert (d.rate_limit, d.max_body_bytes) == (None, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lots", "'lots'"),
        ("0/minute", "'0/minute'"),
        ("10/day", "'10/day'"),
        ("10 per minute", "'10 per minute'"),
        ("-1/second", "'-1/second'"),
        ("5", "5"),
        ("''", "''"),
        ("null", "None"),
    ],
)
def test_a_bad_rate_limit_stops_start_up(tmp_path: Path, value: str, expected: str) -> None:
    assert error(tmp_path, f"sources:\n  a:\n    kind: json\n    rate_limit: {value}\n") == (
        f"F: sources.a.rate_limit: must be <n>/second, <n>/minute or <n>/hour (n at least 1), got {expected}"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("-1", "-1"), ("0", "0"), ("lots", "'lots'"), ("1.5", "1.5"), ("true", "True"), ("'12 kB'", "'12 kB'")],
)
def test_a_bad_max_body_bytes_stops_start_up(tmp_path: Path, value: str, expected: str) -> None:
    path = write(tmp_path, f"sources:\n  a:\n    kind: json\n    max_body_bytes: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_sources(path, PROVIDERS, {}, max_body_bytes=1000)
    assert str(info.value) == (
        f"{path}: sources.a.max_body_bytes: must be a whole number of bytes from 1 to 1000"
        f" (BRIDGE_MAX_BODY_BYTES), got {expected}"
    )


def test_max_body_bytes_may_not_exceed_the_global_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  a:\n    kind: json\n    max_body_bytes: 1001\n")
    with pytest.raises(ConfigError) as info:
        load_sources(path, PROVIDERS, {}, max_body_bytes=1000)
    assert str(info.value) == (
        f"{path}: sources.a.max_body_bytes: 1001 is above BRIDGE_MAX_BODY_BYTES (1000), the limit of every"
        " request; a source can only lower it"
    )
    assert load_sources(path, PROVIDERS, {}, max_body_bytes=1001).sources["a"].max_body_bytes == 1001


# --- the conversation keys (docs/conversations.md) -------------------------------------------------


def test_conversation_keys_default_inherit_and_override(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        create_clients: true
        sources:
          plain: {kind: json}
          own: {kind: json, create_clients: false, message: false, threading: false}
          quiet: {kind: json, client_lookup: false, create_clients: false}
        """,
    )
    plain, own, off = (config.sources[n] for n in ("plain", "own", "quiet"))
    assert (config.client_lookup, config.create_clients) == (True, True)
    assert (plain.client_lookup, plain.create_clients, plain.message, plain.threading) == (True, True, True, True)
    assert (own.client_lookup, own.create_clients, own.message, own.threading) == (True, False, False, False)
    assert (off.client_lookup, off.create_clients) == (False, False)


def test_create_clients_needs_the_look_up(tmp_path: Path) -> None:
    expected = (
        "F: sources.api.create_clients: needs client_lookup, which is off here"
        " (a client is created only after SPP was asked whether it has one)"
    )
    assert error(tmp_path, "sources:\n  api: {kind: json, create_clients: true, client_lookup: false}\n") == expected
    assert error(tmp_path, "client_lookup: false\ncreate_clients: true\nsources:\n  api: {kind: json}\n") == expected
    assert (
        error(tmp_path, "sources:\n  api: {kind: json, message: maybe}\n")
        == "F: sources.api.message: Not a valid boolean."
    )
