"""Pure parts of alert webhooks: the SSRF guard (with a fake resolver), signing against the Standard Webhooks
test vector, secrets, native chat targets and the backoff."""

from __future__ import annotations

import pytest

from engine.errors import OutboundRefused
from engine.outbound import check_url
from engine.webhook_delivery import backoff_s, native_kind
from engine.webhook_signing import key_of, new_secret, signature_headers


def resolver(table: dict[str, list[str]]):  # noqa: ANN201 - a test double
    return lambda host: table.get(host, [])


PUBLIC = resolver({"example.com": ["93.184.215.14"], "inside.example": ["10.1.2.3"],
                   "mixed.example": ["93.184.215.14", "192.168.1.1"], "v6.example": ["2606:4700::1111"],
                   "mapped.example": ["::ffff:127.0.0.1"]})


@pytest.mark.parametrize("url", ["https://example.com/hook", "http://example.com:8080/x?y=1",
                                 "https://v6.example/", "http://93.184.215.14/"])
def test_public_http_targets_pass(url: str) -> None:
    assert check_url(url, [], resolver=PUBLIC) == url


@pytest.mark.parametrize(("url", "why"), [
    ("http://10.0.0.1/", "10.0.0.1"), ("http://169.254.169.254/latest", "169.254.169.254"),
    ("http://127.0.0.1:8080/", "127.0.0.1"), ("http://[::1]/", "::1"), ("http://0.0.0.0/", "0.0.0.0"),
    ("http://224.0.0.1/", "224.0.0.1"), ("http://240.0.0.1/", "240.0.0.1"), ("http://100.64.0.1/", "100.64.0.1"),
    ("http://inside.example/", "10.1.2.3"), ("http://mixed.example/", "192.168.1.1"),
    ("http://mapped.example/", "::ffff:7f00:1"),
])
def test_non_public_addresses_are_refused(url: str, why: str) -> None:
    with pytest.raises(OutboundRefused, match="non-public") as caught:
        check_url(url, [], resolver=PUBLIC)
    assert why in caught.value.message


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "example.com",
                                 "http://a:b@example.com/", "http://example.com:99999/", "", "h" * 3000])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefused, match="invalid url"):
        check_url(url, [], resolver=PUBLIC)


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(OutboundRefused, match="does not resolve"):
        check_url("http://nowhere.example/", [], resolver=PUBLIC)


def test_the_allowlist_names_hosts_or_addresses() -> None:
    assert check_url("http://127.0.0.1:9/x", ["127.0.0.1"], resolver=PUBLIC)
    assert check_url("http://inside.example/x", ["inside.example"], resolver=PUBLIC)
    assert check_url("http://inside.example/x", ["10.1.2.3"], resolver=PUBLIC)
    assert check_url("http://[::1]/x", ["::1"], resolver=PUBLIC)
    with pytest.raises(OutboundRefused):
        check_url("http://mixed.example/", ["93.184.215.14"], resolver=PUBLIC)  # every address must pass


def test_signing_matches_the_standard_webhooks_test_vector() -> None:
    headers = signature_headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                1614265330, b'{"test": 2432232314}')
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek" and headers["webhook-timestamp"] == "1614265330"
    assert headers["X-Taskyard-Signature"].startswith("sha256=") and len(headers["X-Taskyard-Signature"]) == 71


def test_generated_secrets_are_whsec_base64_of_24_bytes_and_others_sign_as_utf8() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(key_of(secret)) == 24 and secret != new_secret()
    assert key_of("my-own-secret-1234") == b"my-own-secret-1234"
    assert key_of("whsec_not base64!") == b"whsec_not base64!"


@pytest.mark.parametrize(("url", "kind"), [
    ("https://hooks.slack.com/services/T0/B0/xyz", "slack"),
    ("https://discord.com/api/webhooks/123/tok", "discord"),
    ("https://discordapp.com/api/webhooks/123/tok", "discord"),
    ("https://hooks.slack.com/other", None), ("https://evil.example/services/T0/B0/x", None),
    ("https://discord.com.evil.example/api/webhooks/1/t", None), ("https://example.com/hook", None),
])
def test_slack_and_discord_are_recognised_by_host_and_path_prefix(url: str, kind: str | None) -> None:
    assert native_kind(url) == kind


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    assert [backoff_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
