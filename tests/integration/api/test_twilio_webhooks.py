"""`POST /v1/webhooks/twilio`: Twilio's signed status callbacks and inbound messages, as the Twilio
sandbox signs them (HMAC-SHA1 of the URL and the sorted form parameters), through the template's
route (no JWT) into the API function, on moto. Decision 023."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest

from herald.models import Category, Urgency
from herald.stores.dynamo import from_attributes
from herald.stores.keys import sms_address
from herald.stores.notifications import NotificationRecord, NotificationStore
from herald.stores.suppression import SuppressionStore
from herald.twilio_feedback import status_callback_url
from local.sandboxes.outbox import Outbox
from local.sandboxes.twilio_messaging import TwilioSandbox
from tests.integration.api.conftest import T0
from tests.support.api import Answer, ApiClient, api_credentials
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration

PATH = "/v1/webhooks/twilio"
BASE = "http://localhost"  # the host the in-process API is reached at (API Gateway's domainName)
USER = "auth0|u-tw"  # ids with characters a URL must escape
NOTIFICATION = "ntf-tw-1"
PHONE = "+14155550123"
SID = "SM" + "0" * 32
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HELP_TEXT = "Herald notifications: reply STOP to opt out, START to opt back in. Msg & data rates may apply."


@pytest.fixture
def twilio() -> TwilioSandbox:
    """The Twilio sandbox with the auth token the stack's Twilio secret holds (it signs webhooks)."""
    return TwilioSandbox(api_credentials().twilio, Outbox())


@pytest.fixture
def sent(stack: MotoStack) -> None:
    """NOTIFICATION's SMS to PHONE, accepted by Twilio (`sent`)."""
    NotificationStore(stack.client("dynamodb"), stack.tables["NotificationsTable"]).create(
        NotificationRecord(
            user_id=USER,
            notification_id=NOTIFICATION,
            event_id="e-tw-1",
            type="security_alert",
            category=Category.TRANSACTIONAL,
            urgency=Urgency.HIGH,
            locale="en",
            data={},
            created_at=T0,
            status="dispatched",
            deliveries={"sms": {"state": "sent", "provider": "twilio", "provider_message_id": SID}},
        )
    )


def callback_path(notification_id: str = NOTIFICATION, user_id: str = USER) -> str:
    """The StatusCallback the SMS sender gives the message, on the API's path."""
    return status_callback_url(PATH, user_id, notification_id)


def status_params(status: str, error_code: int | None = None, to: str = PHONE) -> dict[str, str]:
    params = {
        "AccountSid": api_credentials().twilio.account_sid,
        "ApiVersion": "2010-04-01",
        "From": api_credentials().twilio.from_number,
        "MessageSid": SID,
        "MessageStatus": status,
        "SmsSid": SID,
        "SmsStatus": status,
        "To": to,
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


def inbound_params(body: str, phone: str = PHONE, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": api_credentials().twilio.account_sid,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": phone,
        "MessageSid": "SM" + secrets.token_hex(16),  # each message its own, as Twilio names them
        "NumMedia": "0",
        "SmsStatus": "received",
        "To": api_credentials().twilio.from_number,
        **extra,
    }


def deliver(
    api: ApiClient, path: str, params: dict[str, str], signature: str | None, body: bytes | None = None
) -> Answer:
    headers = dict(FORM, **({"X-Twilio-Signature": signature} if signature is not None else {}))
    return api.post(
        path, user=None, data=body if body is not None else urlencode(params).encode(), headers=headers
    )


def signed(api: ApiClient, twilio: TwilioSandbox, path: str, params: dict[str, str]) -> Answer:
    """As Twilio calls `path`: signed over the full public URL, query string included."""
    return deliver(api, path, params, twilio.sign(BASE + path, params))


def record(stack: MotoStack) -> dict[str, Any]:
    item = stack.client("dynamodb").get_item(
        TableName=stack.tables["NotificationsTable"],
        Key={"user_id": {"S": USER}, "notification_id": {"S": NOTIFICATION}},
        ConsistentRead=True,
    )["Item"]
    return from_attributes(item)


def suppression(stack: MotoStack, phone: str = PHONE) -> dict[str, Any] | None:
    item = (
        stack.client("dynamodb")
        .get_item(TableName=stack.tables["SuppressionTable"], Key={"address": {"S": sms_address(phone)}})
        .get("Item")
    )
    return from_attributes(item) if item else None


def snapshot(stack: MotoStack) -> tuple[dict[str, Any], dict[str, Any] | None]:
    return record(stack), suppression(stack)


def assert_refused(answer: Answer) -> None:
    assert answer.status == 401, answer.body
    assert answer.json["error"]["code"] == "unauthorized"


def assert_empty_twiml(answer: Answer) -> None:
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("application/xml")
    assert answer.body.decode() == '<?xml version="1.0" encoding="UTF-8"?><Response />'


# -- status callbacks ---------------------------------------------------------------------------


@pytest.mark.usefixtures("sent")
def test_a_delivered_callback_moves_the_sms_to_delivered(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    # GIVEN Twilio's signed `delivered` callback to the URL the sender gave the message
    # WHEN Twilio posts it (no JWT)
    answer = signed(api, twilio, callback_path(), status_params("delivered"))
    # THEN the notification its URL names is updated, with Twilio's message SID in the log
    assert answer.status == 204, answer.body
    saved = record(stack)
    assert saved["deliveries"]["sms"]["state"] == "delivered"
    entry = saved["delivery_log"][-1]
    assert (entry["channel"], entry["outcome"], entry["provider"], entry["provider_message_id"]) == (
        "sms",
        "delivered",
        "twilio",
        SID,
    )
    assert suppression(stack) is None


@pytest.mark.usefixtures("sent")
@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_an_undelivered_sms_fails_with_its_error_code_and_the_phone_stays_usable(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox, status: str
) -> None:
    # GIVEN the handset was unreachable (off, out of coverage): 30003, nothing permanent
    answer = signed(api, twilio, callback_path(), status_params(status, 30003))
    assert answer.status == 204, answer.body
    saved = record(stack)
    assert saved["deliveries"]["sms"]["state"] == "failed"
    entry = saved["delivery_log"][-1]
    assert (entry["outcome"], entry["code"]) == ("failed", "30003")
    assert entry["detail"] == f"Twilio {status} 30003: unreachable destination handset"
    assert suppression(stack) is None


@pytest.mark.usefixtures("sent")
@pytest.mark.parametrize("code", [30005, 30006, 21614])
def test_a_number_that_can_never_receive_sms_is_suppressed_as_unreachable(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox, code: int
) -> None:
    answer = signed(api, twilio, callback_path(), status_params("undelivered", code))
    assert answer.status == 204, answer.body
    saved = record(stack)
    assert saved["deliveries"]["sms"]["state"] == "failed"
    assert (saved["delivery_log"][-1]["outcome"], saved["delivery_log"][-1]["code"]) == (
        "unreachable",
        str(code),
    )
    entry = suppression(stack)
    assert entry is not None
    assert (entry["reason"], entry["source"], entry["contact"], entry["notification_id"]) == (
        "unreachable",
        "twilio",
        PHONE,
        NOTIFICATION,
    )


@pytest.mark.usefixtures("sent")
def test_a_callback_saying_the_recipient_opted_out_suppresses_the_phone_as_opted_out(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    answer = signed(api, twilio, callback_path(), status_params("failed", 21610))
    assert answer.status == 204, answer.body
    assert record(stack)["deliveries"]["sms"]["state"] == "failed"
    entry = suppression(stack)
    assert entry is not None and (entry["reason"], entry["source"]) == ("opted_out", "twilio")


@pytest.mark.usefixtures("sent")
@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "sent"])
def test_interim_statuses_change_nothing(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox, status: str
) -> None:
    before = snapshot(stack)
    answer = signed(api, twilio, callback_path(), status_params(status))
    assert answer.status == 204, answer.body
    assert snapshot(stack) == before


def test_a_callback_for_an_unknown_notification_is_acknowledged_and_writes_nothing(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    # GIVEN a genuine callback naming a notification Herald does not keep (erased since)
    answer = signed(api, twilio, callback_path("ntf-gone"), status_params("delivered"))
    # THEN Twilio gets its 2xx (no retries) and nothing is written
    assert answer.status == 204, answer.body
    assert stack.client("dynamodb").scan(TableName=stack.tables["NotificationsTable"])["Items"] == []
    assert suppression(stack) is None


@pytest.mark.usefixtures("sent")
def test_a_replayed_callback_changes_no_state(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    path, params = callback_path(), status_params("undelivered", 30006)
    assert signed(api, twilio, path, params).status == 204
    state, suppressed = snapshot(stack)
    # WHEN Twilio (or anyone who captured it) sends the same signed callback again
    assert signed(api, twilio, path, params).status == 204
    # THEN the state and the suppression entry's reason and creation are as they were
    after, suppressed_after = snapshot(stack)
    assert after["deliveries"]["sms"]["state"] == state["deliveries"]["sms"]["state"] == "failed"
    assert suppressed is not None and suppressed_after is not None
    assert (suppressed_after["reason"], suppressed_after["created_at"]) == (
        suppressed["reason"],
        suppressed["created_at"],
    )


# -- refused: 401 and nothing written -----------------------------------------------------------


@pytest.mark.usefixtures("sent")
def test_an_unsigned_callback_is_refused(stack: MotoStack, api: ApiClient) -> None:
    before = snapshot(stack)
    assert_refused(deliver(api, callback_path(), status_params("undelivered", 30006), None))
    assert snapshot(stack) == before


@pytest.mark.usefixtures("sent")
def test_a_callback_signed_with_another_auth_token_is_refused(stack: MotoStack, api: ApiClient) -> None:
    before = snapshot(stack)
    params = status_params("undelivered", 30006)
    data = BASE + callback_path() + "".join(k + params[k] for k in sorted(params))
    forged = base64.b64encode(hmac.new(b"not-the-auth-token", data.encode(), hashlib.sha1).digest()).decode()
    assert_refused(deliver(api, callback_path(), params, forged))
    assert snapshot(stack) == before


@pytest.mark.usefixtures("sent")
def test_a_callback_whose_parameters_or_url_changed_after_signing_is_refused(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    before = snapshot(stack)
    params = status_params("delivered")
    signature = twilio.sign(BASE + callback_path(), params)
    # a parameter changed (the status), and the signed URL pointed at another notification
    assert_refused(
        deliver(api, callback_path(), {**params, "MessageStatus": "failed", "ErrorCode": "30006"}, signature)
    )
    assert_refused(deliver(api, callback_path(notification_id="ntf-other"), params, signature))
    # signed for another URL (Twilio signs the public URL it called)
    other = twilio.sign("https://api.example.com" + callback_path(), params)
    assert_refused(deliver(api, callback_path(), params, other))
    assert snapshot(stack) == before


@pytest.mark.usefixtures("sent")
def test_behind_https_the_url_twilio_signed_is_the_https_one(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    # API Gateway is reached over HTTPS and says so in X-Forwarded-Proto: Twilio signed https://...
    params = status_params("delivered")
    https = {"X-Forwarded-Proto": "https"}
    as_http = twilio.sign(BASE + callback_path(), params)
    refused = api.post(
        callback_path(),
        user=None,
        data=urlencode(params).encode(),
        headers=dict(FORM, **https, **{"X-Twilio-Signature": as_http}),
    )
    assert_refused(refused)
    as_https = twilio.sign(BASE.replace("http://", "https://") + callback_path(), params)
    answer = api.post(
        callback_path(),
        user=None,
        data=urlencode(params).encode(),
        headers=dict(FORM, **https, **{"X-Twilio-Signature": as_https}),
    )
    assert answer.status == 204, answer.body
    assert record(stack)["deliveries"]["sms"]["state"] == "delivered"


def test_a_forged_stop_is_refused(stack: MotoStack, api: ApiClient, twilio: TwilioSandbox) -> None:
    params = inbound_params("STOP")
    signature = twilio.sign(BASE + PATH, {**params, "From": "+14155550999"})
    assert_refused(deliver(api, PATH, params, signature))
    assert suppression(stack) is None


# -- inbound messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word", ["STOP", " stop ", "Stop", "STOPALL", "unsubscribe", "CANCEL", "end", "QUIT"]
)
def test_an_opt_out_keyword_suppresses_the_phone_for_sms(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox, word: str
) -> None:
    answer = signed(api, twilio, PATH, inbound_params(word))
    # THEN an empty TwiML answer (Twilio confirms the opt-out itself) and the phone is suppressed
    assert_empty_twiml(answer)
    entry = suppression(stack)
    assert entry is not None
    assert (entry["reason"], entry["source"], entry["contact"]) == ("opted_out", "twilio", PHONE)


def test_twilios_own_opt_out_decision_is_honoured_for_a_custom_keyword(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    answer = signed(api, twilio, PATH, inbound_params("ARRET", OptOutType="STOP"))
    assert_empty_twiml(answer)
    assert suppression(stack) is not None


@pytest.mark.parametrize("word", ["START", "yes", " Unstop "])
def test_a_start_keyword_lifts_the_opt_out(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox, word: str
) -> None:
    assert signed(api, twilio, PATH, inbound_params("STOP")).status == 200
    assert suppression(stack) is not None
    assert_empty_twiml(signed(api, twilio, PATH, inbound_params(word)))
    assert suppression(stack) is None


def test_a_replayed_start_after_a_later_stop_changes_nothing(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    # GIVEN STOP, START (captured by someone on the way), then STOP again
    stop, start = inbound_params("STOP"), inbound_params("START")
    assert signed(api, twilio, PATH, stop).status == 200
    start_signature = twilio.sign(BASE + PATH, start)
    assert_empty_twiml(deliver(api, PATH, start, start_signature))
    assert suppression(stack) is None
    assert signed(api, twilio, PATH, inbound_params("STOP")).status == 200
    before = suppression(stack)
    assert before is not None
    # WHEN the captured START is replayed byte for byte (Twilio signs no timestamp: it verifies)
    replay = deliver(api, PATH, start, start_signature)
    # THEN the same answer, and the phone stays opted out, its entry untouched
    assert_empty_twiml(replay)
    assert suppression(stack) == before
    # AND a replayed STOP after a genuine START does not opt the phone out again
    assert_empty_twiml(signed(api, twilio, PATH, inbound_params("START")))
    assert_empty_twiml(signed(api, twilio, PATH, stop))
    assert suppression(stack) is None
    # AND a START that changed nothing, replayed, answers the same
    idle = inbound_params("START")
    for _ in range(2):
        assert_empty_twiml(signed(api, twilio, PATH, idle))
    assert suppression(stack) is None


def test_a_signed_keyword_without_its_message_sid_is_refused_and_writes_nothing(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    params = {key: value for key, value in inbound_params("STOP").items() if key != "MessageSid"}
    answer = signed(api, twilio, PATH, params)
    assert answer.status == 422, answer.body
    assert answer.json["error"]["details"][0]["loc"] == ["body", "MessageSid"]
    assert suppression(stack) is None


@pytest.mark.parametrize("after_stop", [False, True])
def test_start_never_lifts_an_unreachable_number(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox, after_stop: bool
) -> None:
    # GIVEN the phone suppressed as unreachable (before or after a STOP)
    suppressions = SuppressionStore(stack.client("dynamodb"), stack.tables["SuppressionTable"])
    if after_stop:
        assert signed(api, twilio, PATH, inbound_params("STOP")).status == 200
    suppressions.suppress(sms_address(PHONE), reason="unreachable", source="twilio", contact=PHONE)
    # WHEN it texts START
    assert_empty_twiml(signed(api, twilio, PATH, inbound_params("START")))
    # THEN the suppression stands
    entry = suppression(stack)
    assert entry is not None and entry["last_reason"] == "unreachable"


@pytest.mark.parametrize("word", ["HELP", "info"])
def test_help_is_answered_with_the_configured_help_text(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox, word: str
) -> None:
    answer = signed(api, twilio, PATH, inbound_params(word))
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("application/xml")
    assert answer.body.decode() == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        + HELP_TEXT.replace("&", "&amp;")
        + "</Message></Response>"
    )
    assert suppression(stack) is None


def test_any_other_text_gets_an_empty_answer_and_changes_nothing(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    assert_empty_twiml(signed(api, twilio, PATH, inbound_params("please stop sending me these")))
    assert suppression(stack) is None


def test_the_sandboxs_inbound_stop_and_start_reach_the_api_signed(
    stack: MotoStack, api: ApiClient, twilio: TwilioSandbox
) -> None:
    # GIVEN the API served over HTTP as the number's messaging webhook
    served = api.api.start()
    twilio.inbound_url = f"{served.url}{PATH}"
    # WHEN the sandbox simulates the phone texting STOP, then START
    stop = twilio.send_inbound(PHONE, "STOP")
    assert stop.status == 200 and "<Response" in stop.response_body, stop
    assert suppression(stack) is not None
    start = twilio.send_inbound(PHONE, "START")
    # THEN the phone was opted out, then back in
    assert start.status == 200, start
    assert suppression(stack) is None
