"""Control surface: faults, the outbox, the local JWT issuer, configuration and the CLI."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pusher
import pytest
import requests
from pusher.errors import PusherBadStatus
from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient

from local.sandboxes import SandboxCredentials, SandboxHost

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def _sms(sandbox: SandboxHost, client: TwilioClient, to: str = "+14155550123") -> str:
    return client.messages.create(to=to, from_=sandbox.credentials.twilio.from_number, body="hi").sid


def test_503_fault_with_count_2_fails_exactly_twice(
    sandbox: SandboxHost, twilio_client: TwilioClient
) -> None:
    created = requests.post(f"{sandbox.url}/_faults", json={"provider": "twilio", "status": 503, "count": 2})
    assert created.status_code == 201

    failures = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            _sms(sandbox, twilio_client)
        failures.append((raised.value.status, raised.value.code))
    sid = _sms(sandbox, twilio_client)

    assert failures == [(503, 20503), (503, 20503)]
    assert [entry.provider_id for entry in sandbox.outbox.entries()] == [sid]
    assert requests.get(f"{sandbox.url}/_faults").json() == []  # used up


def test_fault_match_targets_one_recipient(sandbox: SandboxHost, sendgrid_client: SendGridAPIClient) -> None:
    sandbox.faults.add_from_dict({"provider": "sendgrid", "status": 429, "match": "bounce-me@"})

    with pytest.raises(SendGridHTTPError) as raised:
        sendgrid_client.send(
            Mail(
                from_email="a@herald.example",
                to_emails="bounce-me@example.com",
                subject="s",
                plain_text_content="b",
            )
        )
    ok = sendgrid_client.send(
        Mail(from_email="a@herald.example", to_emails="fine@example.com", subject="s", plain_text_content="b")
    )

    assert raised.value.status_code == 429
    assert json.loads(raised.value.body)["errors"][0]["message"] == "too many requests"
    assert ok.status_code == 202
    assert [entry.recipient for entry in sandbox.outbox.entries()] == ["fine@example.com"]


def test_duration_fault_expires(sandbox: SandboxHost, pusher_client: pusher.Pusher) -> None:
    sandbox.faults.add("pusher", status=500, duration_seconds=0.4)

    with pytest.raises(PusherBadStatus, match="500"):
        pusher_client.trigger("private-user-1", "e", {})
    with pytest.raises(PusherBadStatus, match="500"):
        pusher_client.trigger("private-user-1", "e", {})
    time.sleep(0.5)
    pusher_client.trigger("private-user-1", "e", {})

    assert len(sandbox.outbox.entries()) == 1


def test_latency_fault_delays_but_delivers(sandbox: SandboxHost, twilio_client: TwilioClient) -> None:
    requests.post(f"{sandbox.url}/_faults", json={"provider": "twilio", "latency_ms": 300})

    started = time.monotonic()
    _sms(sandbox, twilio_client)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    assert len(sandbox.outbox.entries(provider="twilio")) == 1
    assert requests.get(f"{sandbox.url}/_faults").json()[0]["hits"] == 1


def test_faults_only_hit_their_provider_and_can_be_cleared(
    sandbox: SandboxHost, twilio_client: TwilioClient, pusher_client: pusher.Pusher
) -> None:
    sandbox.faults.add("twilio", status=500)
    pusher_client.trigger("private-user-1", "e", {})  # pusher unaffected
    with pytest.raises(TwilioRestException):
        _sms(sandbox, twilio_client)

    assert requests.delete(f"{sandbox.url}/_faults").status_code == 200
    _sms(sandbox, twilio_client)
    assert [entry.provider for entry in sandbox.outbox.entries()] == ["pusher", "twilio"]


@pytest.mark.parametrize(
    "spec",
    [
        {"provider": "nope", "status": 500},
        {"provider": "twilio"},
        {"provider": "twilio", "status": 200},
        {"provider": "twilio", "status": 500, "count": 0},
        {"provider": "twilio", "status": 500, "colour": "red"},
    ],
)
def test_bad_fault_specs_are_400(sandbox: SandboxHost, spec: dict) -> None:
    response = requests.post(f"{sandbox.url}/_faults", json=spec)
    assert response.status_code == 400
    assert "error" in response.json()
    assert sandbox.faults.rules() == []


def test_outbox_filters_and_clear(
    sandbox: SandboxHost, twilio_client: TwilioClient, pusher_client: pusher.Pusher
) -> None:
    _sms(sandbox, twilio_client)
    cursor = sandbox.outbox.last_seq
    time.sleep(0.01)
    moment = datetime.now(UTC).isoformat()
    pusher_client.trigger("private-user-1", "e", {})
    _sms(sandbox, twilio_client, "+14155550999")

    everything = requests.get(f"{sandbox.url}/_outbox").json()
    by_seq = requests.get(f"{sandbox.url}/_outbox", params={"since": cursor}).json()
    by_time = requests.get(f"{sandbox.url}/_outbox", params={"since": moment}).json()
    by_time_z = requests.get(f"{sandbox.url}/_outbox", params={"since": moment.replace("+00:00", "Z")}).json()
    sms_since = requests.get(f"{sandbox.url}/_outbox", params={"since": cursor, "provider": "twilio"}).json()

    assert [entry["provider"] for entry in everything] == ["twilio", "pusher", "twilio"]
    assert [entry["provider"] for entry in by_seq] == ["pusher", "twilio"]
    assert by_time == by_seq == by_time_z
    assert [entry["recipient"] for entry in sms_since] == ["+14155550999"]
    assert set(everything[0]) >= {
        "provider",
        "channel",
        "recipient",
        "subject",
        "body",
        "provider_id",
        "time",
        "request",
    }
    assert everything[0]["time"].endswith("Z")
    assert requests.get(f"{sandbox.url}/_outbox", params={"since": "yesterday"}).status_code == 400

    assert requests.delete(f"{sandbox.url}/_outbox").status_code == 200
    assert requests.get(f"{sandbox.url}/_outbox").json() == []


def test_outbox_wait_for(sandbox: SandboxHost, twilio_client: TwilioClient) -> None:
    with pytest.raises(TimeoutError):
        sandbox.outbox.wait_for(provider="twilio", timeout=0.05)
    sid = _sms(sandbox, twilio_client)
    assert sandbox.outbox.wait_for(provider="twilio", timeout=1)[0].provider_id == sid


def test_token_verifies_against_the_jwks(sandbox: SandboxHost) -> None:
    token = requests.get(f"{sandbox.url}/_token", params={"sub": "user-42"}).json()["token"]
    discovery = requests.get(f"{sandbox.url}/.well-known/openid-configuration").json()

    signing_key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=sandbox.credentials.jwt.audience,
        issuer=discovery["issuer"],
    )

    assert discovery["jwks_uri"] == f"{sandbox.url}/.well-known/jwks.json"
    assert claims["sub"] == "user-42"
    assert claims["exp"] > claims["iat"]
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, signing_key.key, algorithms=["RS256"], audience="someone-else")


def test_expired_and_foreign_tokens_do_not_verify(sandbox: SandboxHost) -> None:
    expired = requests.get(f"{sandbox.url}/_token", params={"sub": "u", "ttl": "-60"}).json()["token"]
    key = jwt.PyJWKClient(f"{sandbox.url}/.well-known/jwks.json").get_signing_key_from_jwt(expired).key
    other = SandboxCredentials.generate(sandbox.url)
    forged = jwt.encode(
        {"sub": "u", "iss": sandbox.url, "aud": other.jwt.audience, "exp": int(time.time()) + 60},
        other.jwt.private_key,
        algorithm="RS256",
        headers={"kid": sandbox.credentials.jwt.kid},
    )

    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(expired, key, algorithms=["RS256"], audience=sandbox.credentials.jwt.audience)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key, algorithms=["RS256"], audience=sandbox.credentials.jwt.audience)
    assert requests.get(f"{sandbox.url}/_token").status_code == 400


def test_secrets_have_heralds_shapes(sandbox: SandboxHost) -> None:
    secrets = sandbox.credentials.secrets()

    assert set(secrets["sendgrid"]) == {"api_key", "host"}
    assert set(secrets["twilio"]) == {
        "account_sid",
        "auth_token",
        "from_number",
        "messaging_service_sid",
        "api_base",
    }
    assert set(secrets["fcm"]) == {"service_account", "fcm_url"}
    assert secrets["pusher"] == {
        "app_id": sandbox.credentials.pusher.app_id,
        "key": sandbox.credentials.pusher.key,
        "secret": sandbox.credentials.pusher.secret,
        "host": "127.0.0.1",
        "port": sandbox.port,
        "ssl": False,
    }
    assert secrets["fcm"]["service_account"]["token_uri"] == f"{sandbox.url}/token"
    assert secrets["fcm"]["service_account"]["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert requests.get(f"{sandbox.url}/_config").json()["secrets"] == secrets
    assert SandboxCredentials.from_dict(sandbox.credentials.to_dict()) == sandbox.credentials


def test_every_request_logs_one_line(sandbox: SandboxHost, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="local.sandboxes"):
        requests.get(f"{sandbox.url}/_health")
        missing = requests.get(f"{sandbox.url}/nothing/here")

    assert missing.status_code == 404
    lines = [record.getMessage() for record in caplog.records if record.name == "local.sandboxes"]
    assert any(line.startswith("GET /_health 200") for line in lines)
    assert any(line.startswith("GET /nothing/here 404") for line in lines)


def test_host_refuses_non_loopback_addresses() -> None:
    with pytest.raises(ValueError, match="loopback"):
        SandboxHost(host="0.0.0.0", port=0)


def test_cli_prints_endpoints_and_serves_until_interrupted(tmp_path: Path) -> None:
    creds_file = tmp_path / "sandbox-credentials.json"
    log = tmp_path / "sandbox.log"  # a file, not a pipe nobody reads: a full pipe would block its logging
    process = subprocess.Popen(
        [sys.executable, "-m", "local.sandboxes", "--port", "0", "--credentials", str(creds_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line == "}\n":
                break
        described = json.loads("".join(lines))
        url = described["endpoints"]["url"]
        assert requests.get(f"{url}/_health").json() == {"ok": True}
        assert described["secrets"]["twilio"]["api_base"] == url
        assert json.loads(creds_file.read_text())["twilio"] == described["credentials"]["twilio"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)  # generous: CI runs this beside heavier suites
        except subprocess.TimeoutExpired:
            process.kill()  # never leave a sandbox behind
            process.wait()
            raise AssertionError(f"no exit after SIGINT; its log ends:\n{log.read_text()[-3000:]}") from None
    assert code == 0
