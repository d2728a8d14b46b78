"""Decision 007 without a network: which transport errors prove a request never left (retry) and
which may have reached the provider (uncertain, never resent); the SDKs' own retries turned off
where they could resend; how per-token and failover results combine."""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
from collections.abc import Callable
from typing import Any

import boto3
import botocore.endpoint
import google.auth.exceptions
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from firebase_admin import _http_client
from firebase_admin import exceptions as firebase_exceptions
from urllib3 import exceptions as urllib3_errors
from urllib3.util.retry import Retry

from herald.channels import fcm, pusher_realtime, ses, twilio_sms
from herald.channels.email_delivery import FailoverEmailProvider
from herald.channels.ports import OutgoingEmail
from herald.channels.push_delivery import combine
from herald.channels.result import (
    AUTH,
    DEAD_TOKEN,
    POSSIBLY_RECEIVED,
    TRANSPORT,
    Accepted,
    Effects,
    PermanentFailure,
    RetryLater,
    SendResult,
    Uncertain,
    classify_http_error,
)
from herald.channels.ses import SesEmailProvider, send_client
from herald.channels.transport import (
    provider_may_have_it,
    request_may_leave,
    requests_not_sent,
    send_attempt,
    tls_handshake_failed,
    urllib_not_sent,
)

pytestmark = pytest.mark.unit

URL = "https://api.example.com/send"
EMAIL = OutgoingEmail(sender="a@example.com", to="b@example.com", subject="s", text="t")


def refused() -> requests.ConnectionError:
    reason = urllib3_errors.NewConnectionError(None, "Failed to establish a new connection: refused")
    return requests.ConnectionError(urllib3_errors.MaxRetryError(None, URL, reason))


def unresolvable() -> requests.ConnectionError:
    reason = urllib3_errors.NameResolutionError("api.example.com", None, socket.gaierror(-2, "unknown"))
    return requests.ConnectionError(urllib3_errors.MaxRetryError(None, URL, reason))


def reset_after_writing() -> requests.ConnectionError:
    # what requests raises when the server drops the connection while we wait for the answer
    aborted = urllib3_errors.ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("Remote end closed connection")
    )
    return requests.ConnectionError(aborted)


def read_retries_exhausted() -> requests.ConnectionError:
    reason = urllib3_errors.ReadTimeoutError(None, URL, "Read timed out.")
    return requests.ConnectionError(urllib3_errors.MaxRetryError(None, URL, reason))


def handshake_error() -> ssl.SSLError:
    """An SSLError raised inside a function called `do_handshake`, as the ssl module does."""

    def do_handshake() -> None:
        raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")

    try:
        do_handshake()
    except ssl.SSLError as error:
        return error
    raise AssertionError("unreachable")


# -- requests (Twilio, Pusher, FCM) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "not_sent"),
    [
        (requests.ConnectTimeout("connect timed out"), True),
        (refused(), True),
        (unresolvable(), True),
        (
            requests.exceptions.SSLError(urllib3_errors.SSLError(ssl.SSLCertVerificationError("bad")), None),
            True,
        ),
        (requests.exceptions.SSLError(urllib3_errors.SSLError(handshake_error())), True),
        (
            requests.exceptions.SSLError(urllib3_errors.SSLError(ssl.SSLError(1, "record layer failure"))),
            False,
        ),
        (requests.ReadTimeout("read timed out"), False),
        (reset_after_writing(), False),
        (read_retries_exhausted(), False),
        (requests.exceptions.ChunkedEncodingError("broken answer"), False),
        (requests.Timeout("total time exceeded"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_only_connection_failures_prove_a_requests_call_never_left(error: Exception, not_sent: bool) -> None:
    assert requests_not_sent(error) is not_sent


def test_twilio_sorts_transport_errors_by_what_they_prove() -> None:
    assert isinstance(twilio_sms.classify_transport_error(refused()), RetryLater)
    result = twilio_sms.classify_transport_error(requests.ReadTimeout("read timed out"))
    assert isinstance(result, Uncertain)
    assert result.code == POSSIBLY_RECEIVED


def test_pusher_a_timed_out_occupancy_read_is_retried_but_a_timed_out_trigger_is_uncertain() -> None:
    timeout = requests.ReadTimeout("read timed out")
    assert isinstance(pusher_realtime.classify_error(timeout), RetryLater)  # a GET triggers nothing
    assert isinstance(pusher_realtime.classify_error(timeout, triggered=True), Uncertain)
    assert isinstance(pusher_realtime.classify_error(reset_after_writing(), triggered=True), Uncertain)
    assert isinstance(pusher_realtime.classify_error(refused(), triggered=True), RetryLater)
    too_big = pusher_realtime.classify_error(ValueError("Too much data"), triggered=True)
    assert isinstance(too_big, PermanentFailure)  # the SDK refused it before sending


# -- urllib (SendGrid) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "not_sent"),
    [
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), True),
        (urllib.error.URLError(socket.gaierror(-2, "unknown host")), True),
        (urllib.error.URLError(TimeoutError("timed out")), True),  # connect or write: incomplete
        (TimeoutError("timed out"), False),  # waiting for the answer
        (ConnectionResetError(104, "reset"), False),
        (http.client.RemoteDisconnected("closed"), False),
        (urllib.error.HTTPError(URL, 503, "down", None, None), False),  # an answer, not a transport error
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_urllib_wraps_what_happens_before_the_request_is_written(error: Exception, not_sent: bool) -> None:
    assert urllib_not_sent(error) is not_sent


def test_a_tls_error_counts_as_a_handshake_failure_only_when_it_is_one() -> None:
    assert tls_handshake_failed(urllib3_errors.SSLError(handshake_error()))
    assert tls_handshake_failed(urllib3_errors.SSLError(ssl.SSLCertVerificationError("self-signed")))
    assert not tls_handshake_failed(urllib3_errors.SSLError(ssl.SSLError(1, "bad record mac")))


# -- botocore (SES) -----------------------------------------------------------------------------


def ses_client(config: Config | None = None) -> Any:
    options = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    return boto3.client("sesv2", config=config, **options) if config else send_client(**options)


def on_send(client: Any, effect: Callable[[], None]) -> list[int]:
    """Replace the HTTP layer: `effect` runs instead of each send attempt (and raises)."""
    attempts: list[int] = []

    def handler(**kwargs: Any) -> None:
        attempts.append(1)
        effect()

    client.meta.events.register("before-send.sesv2.SendEmail", handler)
    return attempts


def read_timeout() -> None:
    raise ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")


def test_botocore_itself_resends_a_read_timed_out_send_email_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # why SesEmailProvider insists on send_client(): the default client makes up to 5 attempts
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda seconds: None)  # skip its backoff
    client = ses_client(Config(read_timeout=1))
    attempts = on_send(client, read_timeout)
    with pytest.raises(ReadTimeoutError):
        client.send_email(FromEmailAddress="a@example.com", Destination={}, Content={"Raw": {"Data": b"x"}})
    assert len(attempts) > 1


def test_the_ses_provider_refuses_a_client_that_retries() -> None:
    with pytest.raises(ValueError, match="send_client"):
        SesEmailProvider(ses_client(Config(read_timeout=1)))


def test_an_ses_read_timeout_is_uncertain_after_one_attempt() -> None:
    client = ses_client()
    provider = SesEmailProvider(client)
    attempts = on_send(client, read_timeout)
    with send_attempt():
        result = provider.send(EMAIL)
        assert provider_may_have_it() == "ses"
    assert isinstance(result, Uncertain)
    assert result.code == POSSIBLY_RECEIVED
    assert len(attempts) == 1


def test_an_unreachable_ses_endpoint_is_retried() -> None:
    client = ses_client()
    provider = SesEmailProvider(client)

    def refused_connection() -> None:
        raise EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com")

    on_send(client, refused_connection)
    result = provider.send(EMAIL)
    assert isinstance(result, RetryLater)
    assert result.code == TRANSPORT


def test_an_ses_error_before_the_request_is_sent_is_retried() -> None:
    client = ses_client()
    provider = SesEmailProvider(client)

    def no_credentials(**kwargs: Any) -> None:
        raise NoCredentialsError()

    client.meta.events.register("before-sign.sesv2.SendEmail", no_credentials)
    with send_attempt():
        result = provider.send(EMAIL)
        assert provider_may_have_it() is None
    assert isinstance(result, RetryLater)


# -- firebase-admin (FCM) -----------------------------------------------------------------------


def test_firebase_admins_default_retries_resend_after_a_read_error() -> None:
    # why FcmPushProvider replaces the session's adapters (firebase-admin 7.7)
    assert _http_client.DEFAULT_RETRY_CONFIG.read == 1
    assert _http_client.DEFAULT_RETRY_CONFIG.allowed_methods is None  # POST included


def test_the_fcm_session_never_retries_after_a_read_error() -> None:
    client = _http_client.JsonHttpClient()  # mounts DEFAULT_RETRY_CONFIG on http:// and https://
    client.session.mount(
        "https://fcm.googleapis.com",
        requests.adapters.HTTPAdapter(max_retries=_http_client.DEFAULT_RETRY_CONFIG),
    )
    fcm.without_read_retries(client.session, "http://127.0.0.1:4010/v1/projects/p/messages:send")
    assert set(client.session.adapters) >= {
        "http://",
        "https://",
        "https://fcm.googleapis.com",
        "http://127.0.0.1:4010",
    }
    for adapter in client.session.adapters.values():
        retry: Retry = adapter.max_retries
        with pytest.raises(urllib3_errors.ReadTimeoutError):  # re-raised at once: not retried
            retry.increment("POST", URL, error=urllib3_errors.ReadTimeoutError(None, URL, "timed out"))
        with pytest.raises(urllib3_errors.ProtocolError):
            retry.increment("POST", URL, error=urllib3_errors.ProtocolError("Connection aborted."))
        connect = urllib3_errors.NewConnectionError(None, "refused")
        assert retry.increment("POST", URL, error=connect).connect == 0  # one reconnect: never sent
        assert not retry.respect_retry_after_header  # a Retry-After never sleeps past the deadline
        assert not retry.is_retry("POST", 500) and not retry.is_retry("POST", 503)  # answers: Herald's


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (
            firebase_exceptions.DeadlineExceededError("timed out", cause=requests.ReadTimeout("read")),
            Uncertain,
            POSSIBLY_RECEIVED,
        ),
        (
            firebase_exceptions.UnavailableError("aborted", cause=reset_after_writing()),
            Uncertain,
            POSSIBLY_RECEIVED,
        ),
        (
            firebase_exceptions.DeadlineExceededError("timed out", cause=requests.ConnectTimeout("connect")),
            RetryLater,
            TRANSPORT,
        ),
        (firebase_exceptions.UnavailableError("refused", cause=refused()), RetryLater, TRANSPORT),
        (google.auth.exceptions.RefreshError("invalid_grant"), RetryLater, AUTH),
        (google.auth.exceptions.TransportError("token endpoint unreachable"), RetryLater, TRANSPORT),
        (RuntimeError("something after the request went out"), Uncertain, POSSIBLY_RECEIVED),
    ],
)
def test_fcm_sorts_errors_without_an_answer_by_what_they_prove(
    error: Exception, kind: type, code: str
) -> None:
    result = fcm.classify_error(error, "tok-1")
    assert isinstance(result, kind)
    assert result.code == code
    assert result.effects.dead_tokens == ()


# -- combining per-token results (push) ---------------------------------------------------------


def test_an_accepted_device_makes_the_push_sent_and_the_uncertain_one_is_reported() -> None:
    results: list[SendResult] = [Accepted("fcm", "projects/p/messages/1"), Uncertain("fcm", "read timeout")]
    combined = combine("fcm", ["t1", "t2"], results)
    assert isinstance(combined, Accepted)
    assert "1 of 2 device(s) accepted, 1 uncertain" in (combined.detail or "")


def test_with_no_device_accepting_one_uncertain_device_makes_the_push_uncertain() -> None:
    results: list[SendResult] = [
        RetryLater("fcm", "refused", code=TRANSPORT),
        Uncertain("fcm", "read timeout"),
        PermanentFailure("fcm", "gone", code=DEAD_TOKEN, effects=Effects(dead_tokens=("t3",))),
    ]
    combined = combine("fcm", ["t1", "t2", "t3"], results)
    assert isinstance(combined, Uncertain)  # resending to t1 could reach t2 twice: nothing is resent
    assert combined.effects.dead_tokens == ("t3",)
    assert "0 of 3 device(s) accepted, 1 uncertain, 1 dead, 1 transient failure(s)" in combined.reason


# -- email failover -----------------------------------------------------------------------------


class FakeEmail:
    def __init__(self, name: str, result: SendResult) -> None:
        self.name = name
        self.result = result
        self.sent: list[OutgoingEmail] = []

    def send(self, email: OutgoingEmail) -> SendResult:
        self.sent.append(email)
        return self.result


def test_no_failover_after_an_uncertain_result() -> None:
    primary = FakeEmail("ses", Uncertain("ses", "read timeout"))
    secondary = FakeEmail("sendgrid", Accepted("sendgrid", "sg-1"))
    result = FailoverEmailProvider(primary, secondary).send(EMAIL)
    assert isinstance(result, Uncertain)
    assert secondary.sent == []


def test_failover_after_a_proven_non_delivery_and_an_uncertain_secondary_stays_uncertain() -> None:
    primary = FakeEmail("ses", RetryLater("ses", "connection refused", code=TRANSPORT))
    secondary = FakeEmail("sendgrid", Uncertain("sendgrid", "read timeout"))
    result = FailoverEmailProvider(primary, secondary).send(EMAIL)
    assert len(secondary.sent) == 1
    assert isinstance(result, Uncertain)
    assert result.provider == "sendgrid"
    assert "failed over from ses" in result.reason


@pytest.mark.parametrize(
    ("status", "fails_over"), [(500, False), (502, False), (504, False), (503, True), (429, True)]
)
def test_failover_only_on_answers_that_prove_the_primary_did_not_take_it(
    status: int, fails_over: bool
) -> None:
    # GIVEN SendGrid answers `status` (a 500 may come after it queued the message; a 503 or 429 not)
    primary = FakeEmail("sendgrid", classify_http_error("sendgrid", status, f"HTTP {status}"))
    secondary = FakeEmail("ses", Accepted("ses", "ses-1"))
    # WHEN the failover provider sends
    result = FailoverEmailProvider(primary, secondary).send(EMAIL)
    # THEN SES is tried only when SendGrid provably did not take it; otherwise SendGrid is retried later
    assert len(secondary.sent) == (1 if fails_over else 0)
    assert isinstance(result, Accepted if fails_over else RetryLater)


@pytest.mark.parametrize(
    ("code", "status", "fails_over"),
    [("InternalFailure", 500, False), ("ThrottlingException", 400, True), ("ServiceUnavailable", 503, True)],
)
def test_an_ses_server_fault_is_retried_on_ses_not_failed_over(
    code: str, status: int, fails_over: bool
) -> None:
    error = ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail"
    )
    result = ses.classify_client_error(error)
    assert isinstance(result, RetryLater)
    assert result.proves_not_accepted is fails_over


def test_a_failover_forgets_the_primarys_mark() -> None:
    class Raising:
        name = "ses"

        def send(self, email: OutgoingEmail) -> SendResult:
            raise RuntimeError("a bug before SES's request left")

    class AnsweredThrottled:
        name = "sendgrid"

        def send(self, email: OutgoingEmail) -> SendResult:
            request_may_leave("sendgrid")  # its request went out, and it answered 429
            return classify_http_error("sendgrid", 429, "slow down")

    with send_attempt():
        with pytest.raises(RuntimeError):
            FailoverEmailProvider(AnsweredThrottled(), Raising()).send(EMAIL)
        assert provider_may_have_it() is None  # the crash is not blamed on SendGrid's answered request


# -- the point of no return ---------------------------------------------------------------------


def test_the_mark_lasts_for_one_attempt() -> None:
    with send_attempt():
        assert provider_may_have_it() is None
        request_may_leave("twilio")
        assert provider_may_have_it() == "twilio"
    with send_attempt():
        assert provider_may_have_it() is None
