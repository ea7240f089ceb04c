"""Server-to-server request signing for the visitor API."""

from __future__ import annotations

from slackrouter.api.signing import sign, verify

BODY = b'{"text": "hi"}'


def test_a_genuine_signature_verifies() -> None:
    assert verify("secret", "1000", sign("secret", "1000", BODY), BODY, now=1000) is None


def test_a_changed_body_secret_or_timestamp_does_not() -> None:
    good = sign("secret", "1000", BODY)
    assert verify("secret", "1000", good, BODY + b" ", now=1000) == "signature does not match"
    assert verify("other", "1000", good, BODY, now=1000) == "signature does not match"
    assert verify("secret", "1001", good, BODY, now=1000) == "signature does not match"


def test_outside_five_minutes_is_refused() -> None:
    signature = sign("secret", "1000", BODY)
    assert verify("secret", "1000", signature, BODY, now=1300) is None
    assert "5-minute" in (verify("secret", "1000", signature, BODY, now=1301) or "")
    assert "5-minute" in (verify("secret", "1000", signature, BODY, now=699) or "")


def test_missing_or_malformed_headers_are_named() -> None:
    assert "X-Slackrouter-Signature" in (verify("s", "1000", None, BODY, now=1000) or "")
    assert "Unix seconds" in (verify("s", "soon", "v1=00", BODY, now=1000) or "")
