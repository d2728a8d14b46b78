"""SendGrid's and Twilio's webhook shapes turned into Herald's feedback (herald.sendgrid_feedback,
herald.twilio_feedback): the parsing alone, without I/O. Decision 023."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from herald.feedback import Feedback
from herald.sendgrid_feedback import EventWebhookVerifier, message_id, parse_events
from herald.twilio_feedback import (
    Keyword,
    TwilioWebhookVerifier,
    keyword,
    status_callback_url,
    status_report,
    twiml,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


# -- SendGrid -----------------------------------------------------------------------------------


def test_sendgrids_message_id_is_the_x_message_id_the_sender_recorded() -> None:
    assert message_id("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0") == "14c5d75ce93"
    assert message_id(None) is None


def test_each_event_kind_maps_to_one_feedback_and_custom_args_become_ids() -> None:
    ids = {
        "notification_id": "ntf-1",
        "user_id": "42",
        "email": "ana@example.com",
        "timestamp": 1_800_000_000,
    }
    parsed = parse_events(
        [
            {**ids, "event": "delivered", "sg_event_id": "a"},
            {**ids, "event": "bounce", "type": "bounce", "status": "5.1.1", "sg_event_id": "b"},
            {
                **ids,
                "event": "bounce",
                "type": "blocked",
                "bounce_classification": "Reputation",
                "sg_event_id": "c",
            },
            {**ids, "event": "dropped", "reason": "Bounced Address", "sg_event_id": "d"},
            {
                **ids,
                "event": "dropped",
                "reason": "Spam Content (if spam checker app enabled)",
                "sg_event_id": "e",
            },
            {**ids, "event": "spamreport", "sg_event_id": "f"},
            {**ids, "event": "deferred", "response": "421", "attempt": "3", "sg_event_id": "g"},
            {**ids, "event": "open", "sg_event_id": "h"},
            {**ids, "event": "processed", "sg_event_id": "i"},
            {**ids, "event": "delivered", "sg_event_id": "a"},  # the same event again
            "not an event",
        ],
        NOW,
    )
    assert [e.feedback for e in parsed.events] == [
        Feedback.DELIVERED,
        Feedback.BOUNCED,
        Feedback.FAILED,
        Feedback.BOUNCED,
        Feedback.FAILED,
        Feedback.COMPLAINED,
        Feedback.DEFERRED,
        Feedback.OPENED,
    ]
    assert (parsed.ignored, parsed.duplicates, parsed.malformed) == (1, 1, 1)
    first = parsed.events[0]
    assert (first.notification_id, first.user_id, first.contact, first.provider) == (
        "ntf-1",
        "42",
        "ana@example.com",
        "sendgrid",
    )
    assert first.at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert parsed.events[1].code == "5.1.1"


def test_a_body_that_is_not_an_array_is_not_sendgrids() -> None:
    with pytest.raises(ValueError):
        parse_events({"event": "delivered"}, NOW)


def _signed(key: ec.EllipticCurvePrivateKey, body: bytes, stamp: int) -> tuple[str, str]:
    signature = key.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode(), str(stamp)


def test_the_verifier_uses_the_sdk_and_refuses_stale_and_foreign_signatures() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    verifier = EventWebhookVerifier.from_secret({"api_key": "SG.x", "webhook_public_key": public})
    body = b'[{"event":"delivered"}]\r\n'
    now = time.time()
    assert verifier.verify(body, *_signed(key, body, int(now)), now=now)
    assert not verifier.verify(body, *_signed(key, body, int(now) - 301), now=now)
    assert not verifier.verify(body + b" ", *_signed(key, body, int(now)), now=now)
    assert not verifier.verify(
        body, *_signed(ec.generate_private_key(ec.SECP256R1()), body, int(now)), now=now
    )
    assert not verifier.verify(body, "%%%", str(int(now)), now=now)
    assert not verifier.verify(body, *_signed(key, body, int(now))[:1], "soon", now=now)


def test_a_secret_without_a_usable_verification_key_is_refused() -> None:
    with pytest.raises(KeyError):
        EventWebhookVerifier.from_secret({"api_key": "SG.x"})
    with pytest.raises(ValueError):
        EventWebhookVerifier.from_secret({"webhook_public_key": "bm90IGEga2V5"})


# -- Twilio -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected_query"),
    [
        ("https://api.example.com/v1/webhooks/twilio", ""),
        ("https://api.example.com/v1/webhooks/twilio?tenant=t1", "tenant=t1&"),
    ],
)
def test_the_callback_url_carries_the_ids_after_any_query_of_its_own(base: str, expected_query: str) -> None:
    url = status_callback_url(base, "auth0|42", "ntf-1")
    assert urlsplit(url).query == expected_query + "notification_id=ntf-1&user_id=auth0%7C42"
    query = dict(parse_qsl(urlsplit(url).query))
    assert (query["notification_id"], query["user_id"]) == ("ntf-1", "auth0|42")


@pytest.mark.parametrize(
    ("status", "code", "feedback"),
    [
        ("delivered", None, Feedback.DELIVERED),
        ("read", None, Feedback.OPENED),
        ("undelivered", "30003", Feedback.FAILED),
        ("failed", "30007", Feedback.FAILED),
        ("undelivered", "30006", Feedback.UNREACHABLE),
        ("failed", "30005", Feedback.UNREACHABLE),
        ("failed", "21614", Feedback.UNREACHABLE),
        ("failed", "21610", Feedback.FAILED),
    ],
)
def test_status_callbacks_map_to_feedback(status: str, code: str | None, feedback: Feedback) -> None:
    params = {"MessageStatus": status, "MessageSid": "SM1", "To": "+14155550100"}
    if code:
        params["ErrorCode"] = code
    report = status_report(params, {"notification_id": "ntf-1", "user_id": "42"}, NOW)
    assert report is not None
    assert report.event.feedback is feedback
    assert report.event.code == code
    assert report.opted_out is (code == "21610")
    assert (report.event.contact, report.event.provider_message_id) == ("+14155550100", "SM1")


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "sent", "scheduled", "canceled"])
def test_interim_statuses_report_nothing(status: str) -> None:
    assert status_report({"MessageStatus": status}, {}, NOW) is None


@pytest.mark.parametrize(
    ("body", "opt_out_type", "expected"),
    [
        ("STOP", None, Keyword.STOP),
        ("  quit\n", None, Keyword.STOP),
        ("OptOut", None, Keyword.STOP),
        ("start", None, Keyword.START),
        ("UNSTOP", None, Keyword.START),
        ("Yes", None, Keyword.START),
        ("help", None, Keyword.HELP),
        ("please stop", None, None),
        ("ARRET", "STOP", Keyword.STOP),
        ("hello", "", None),
    ],
)
def test_keywords(body: str, opt_out_type: str | None, expected: Keyword | None) -> None:
    assert keyword(body, opt_out_type) is expected


def test_twiml_escapes_the_help_text() -> None:
    assert twiml("Rates <may> apply & more") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Rates &lt;may&gt; apply &amp; more'
        "</Message></Response>"
    )
    assert twiml() == '<?xml version="1.0" encoding="UTF-8"?><Response />'


def test_the_twilio_verifier_checks_the_sdk_signature_and_the_account() -> None:
    verifier = TwilioWebhookVerifier.from_secret({"account_sid": "AC1", "auth_token": "tok"})
    url = "https://api.example.com/v1/webhooks/twilio?notification_id=n&user_id=u"
    params = {"AccountSid": "AC1", "MessageStatus": "delivered"}
    signature = RequestValidator("tok").compute_signature(url, params)
    assert verifier.verify(url, params, signature)
    assert not verifier.verify(url.replace("user_id=u", "user_id=v"), params, signature)
    other_account = {**params, "AccountSid": "AC2"}
    assert not verifier.verify(
        url, other_account, RequestValidator("tok").compute_signature(url, other_account)
    )
