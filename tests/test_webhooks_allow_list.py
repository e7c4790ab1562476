"""Where webhooks may go: loopback by default, nothing in hosted mode unless allowed, and only
the hosts and networks `--webhook-allow` names."""

from __future__ import annotations

import pytest

from opsmerge_sandbox.cli import build_parser
from opsmerge_sandbox.commands.serve import settings_from_args
from opsmerge_sandbox.events.allowlist import LOOPBACK, WebhookAllow
from tests.conftest import make_app

LIMIT = 2048


def test_loopback_is_allowed_by_default_and_nothing_else() -> None:
    allow = WebhookAllow.parse(LOOPBACK)
    for url in ("http://127.0.0.1:9000/h", "http://localhost/h", "https://[::1]:8443/h"):
        assert allow.refusal(url, LIMIT) is None, url
    for url in ("http://10.0.0.1/h", "http://example.com/h", "http://127.0.0.1.nip.io/h"):
        assert "may not post to" in (allow.refusal(url, LIMIT) or ""), url


def test_bad_urls_are_refused_with_the_reason() -> None:
    allow = WebhookAllow.parse(LOOPBACK)
    assert "http or https" in (allow.refusal("file:///etc/passwd", LIMIT) or "")
    assert "user name or password" in (allow.refusal("http://u:p@127.0.0.1/", LIMIT) or "")
    assert "not a URL" in (allow.refusal("http://127.0.0.1:99999/", LIMIT) or "")
    assert "longer than" in (allow.refusal("http://127.0.0.1/" + "a" * LIMIT, LIMIT) or "")


def test_listed_hosts_and_networks_are_allowed() -> None:
    allow = WebhookAllow.parse(("hooks.internal", "10.1.0.0/16"))
    assert allow.refusal("https://hooks.internal/x", LIMIT) is None
    assert allow.refusal("http://10.1.2.3/x", LIMIT) is None
    assert allow.refusal("http://10.2.0.1/x", LIMIT) is not None
    assert allow.refusal("http://127.0.0.1/x", LIMIT) is not None  # the list replaces loopback
    with pytest.raises(ValueError, match="not a host name"):
        WebhookAllow.parse(("bad host!",))


def test_hosted_mode_allows_no_webhook_unless_told() -> None:
    hosted = make_app(hosted=True).state.sandbox.events.allow
    assert hosted.refusal("http://127.0.0.1:9000/h", LIMIT) is not None
    assert "--webhook-allow" in hosted.describe()
    told = make_app(hosted=True, webhook_allow=("127.0.0.1",)).state.sandbox.events.allow
    assert told.refusal("http://127.0.0.1:9000/h", LIMIT) is None


def test_the_serve_option_is_repeatable_and_refuses_garbage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(
        ["serve", "--webhook-allow", "hooks.internal", "--webhook-allow", "10.0.0.0/8"]
    )
    assert settings_from_args(args).webhook_allow == ("hooks.internal", "10.0.0.0/8")
    assert settings_from_args(build_parser().parse_args(["serve"])).webhook_allow is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--webhook-allow", "not a host"])
    assert "not a host name" in capsys.readouterr().err
