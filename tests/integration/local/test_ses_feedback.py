"""SES mailbox-simulator feedback on a real moto server: sends recorded by moto become SES-shaped
events on the default bus, routed (as the template's SesFeedbackRule does) to a queue."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import boto3
import pytest

from local.model import StackDescription
from local.runner import Runner
from local.ses_feedback import InProcessMotoMail, MotoDataJsonMail, SesFeedback, moto_sent_mail

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ACCOUNT = "123456789012"
SENDER = "notifications@herald.test"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def configuration_set(clients: Callable[[str], Any]) -> str:
    name = f"herald-test-{uuid.uuid4().hex[:8]}"
    clients("ses").verify_email_identity(EmailAddress=SENDER)
    clients("sesv2").create_configuration_set(ConfigurationSetName=name)
    return name


@pytest.fixture
def feedback_queue(clients: Callable[[str], Any]) -> Iterator[str]:
    """A queue behind a default-bus rule on `aws.ses`, like the template's SesFeedbackRule."""
    sqs, events = clients("sqs"), clients("events")
    url = sqs.create_queue(QueueName=f"feedback-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"ses-feedback-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.ses"]}), State="ENABLED")
    events.put_targets(Rule=rule, Targets=[{"Id": "feedback", "Arn": arn}])
    yield url
    events.remove_targets(Rule=rule, Ids=["feedback"])
    events.delete_rule(Name=rule)


@pytest.fixture
def runner(endpoint: str) -> Iterator[Runner]:
    stack = StackDescription(
        region=REGION,
        aws_endpoint=endpoint,
        api_endpoint="http://127.0.0.1:0",
        sandbox_endpoint="http://127.0.0.1:0",
        parameters={},
    )
    with Runner(stack, emulate_scheduler=False, emulate_ttl=False, ses_interval_seconds=0.1) as running:
        yield running


def received(sqs: Any, url: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait for `count` events on the queue; then make sure no more arrive shortly after."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(events) < count:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            events.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    time.sleep(0.5)
    extra = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return events + [json.loads(m["Body"]) for m in extra]


def raw_mime(to: str, *, headers: dict[str, str] | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"Herald <{SENDER}>"
    message["To"] = to
    message["Subject"] = "Your weekly digest"
    message["List-Unsubscribe"] = "<https://herald.test/unsubscribe?t=abc>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content("Hello")
    return message.as_bytes()


def send_raw_v2(to: str, *, endpoint: str, configuration_set: str | None, tags: dict[str, str]) -> str:
    # boto3's default session, as Herald's email sender creates its client: the runner captures it.
    client = boto3.client("sesv2", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
    params: dict[str, Any] = {
        "FromEmailAddress": SENDER,
        "Destination": {"ToAddresses": [to]},
        "Content": {"Raw": {"Data": raw_mime(to)}},
        "EmailTags": [{"Name": k, "Value": v} for k, v in tags.items()],
    }
    if configuration_set:
        params["ConfigurationSetName"] = configuration_set
    return client.send_email(**params)["MessageId"]


def test_a_bounce_simulator_send_puts_an_ses_bounce_event_on_the_default_bus(
    runner: Runner, endpoint: str, clients: Callable[[str], Any], configuration_set: str, feedback_queue: str
) -> None:
    to = "bounce@simulator.amazonses.com"
    message_id = send_raw_v2(
        to,
        endpoint=endpoint,
        configuration_set=configuration_set,
        tags={"notification_id": "n-1", "user_id": "u-1"},
    )
    events = received(clients("sqs"), feedback_queue, 2)
    assert [e["detail-type"] for e in events] == ["Email Sent", "Email Bounced"]
    bounce = events[1]
    assert bounce["source"] == "aws.ses"
    assert bounce["resources"] == [f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{configuration_set}"]
    detail = bounce["detail"]
    assert detail["eventType"] == "Bounce"
    assert detail["bounce"]["bounceType"] == "Permanent"
    assert detail["bounce"]["bounceSubType"] == "General"
    assert [r["emailAddress"] for r in detail["bounce"]["bouncedRecipients"]] == [to]
    assert detail["bounce"]["bouncedRecipients"][0]["action"] == "failed"
    mail = detail["mail"]
    assert mail["messageId"] == message_id
    assert mail["destination"] == [to]
    assert mail["source"] == SENDER
    assert mail["sourceArn"] == f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{SENDER}"
    assert mail["tags"]["ses:configuration-set"] == [configuration_set]
    assert mail["tags"]["notification_id"] == ["n-1"] and mail["tags"]["user_id"] == ["u-1"]
    assert mail["commonHeaders"]["subject"] == "Your weekly digest"
    assert {"name": "List-Unsubscribe", "value": "<https://herald.test/unsubscribe?t=abc>"} in mail["headers"]


def test_success_yields_sent_and_delivered_and_other_addresses_nothing(
    runner: Runner, endpoint: str, clients: Callable[[str], Any], configuration_set: str, feedback_queue: str
) -> None:
    send_raw_v2("someone@example.com", endpoint=endpoint, configuration_set=configuration_set, tags={})
    send_raw_v2(
        "success+label@simulator.amazonses.com",
        endpoint=endpoint,
        configuration_set=configuration_set,
        tags={},
    )
    events = received(clients("sqs"), feedback_queue, 2)
    assert [e["detail-type"] for e in events] == ["Email Sent", "Email Delivered"]
    assert all(
        e["detail"]["mail"]["destination"] == ["success+label@simulator.amazonses.com"] for e in events
    )
    assert events[1]["detail"]["delivery"]["recipients"] == ["success+label@simulator.amazonses.com"]


def test_no_configuration_set_no_events(
    runner: Runner, endpoint: str, clients: Callable[[str], Any], configuration_set: str, feedback_queue: str
) -> None:
    send_raw_v2("bounce@simulator.amazonses.com", endpoint=endpoint, configuration_set=None, tags={})
    assert received(clients("sqs"), feedback_queue, 1, timeout=2.0) == []


def test_configuration_set_and_tags_from_the_raw_headers_of_a_send_made_elsewhere(
    runner: Runner, clients: Callable[[str], Any], configuration_set: str, feedback_queue: str
) -> None:
    # A client of another session (as another process would be): only the X-SES headers tell.
    to = "complaint@simulator.amazonses.com"
    clients("ses").send_raw_email(
        Source=SENDER,
        Destinations=[to],
        RawMessage={
            "Data": raw_mime(
                to,
                headers={
                    "X-SES-CONFIGURATION-SET": configuration_set,
                    "X-SES-MESSAGE-TAGS": "notification_id=n-9, user_id=u-9",
                },
            )
        },
    )
    events = received(clients("sqs"), feedback_queue, 3)
    assert [e["detail-type"] for e in events] == ["Email Sent", "Email Delivered", "Email Complaint Received"]
    complaint = events[2]["detail"]
    assert complaint["complaint"]["complaintFeedbackType"] == "abuse"
    assert complaint["complaint"]["complainedRecipients"] == [{"emailAddress": to}]
    assert complaint["mail"]["tags"]["notification_id"] == ["n-9"]
    assert complaint["mail"]["tags"]["ses:configuration-set"] == [configuration_set]
    assert complaint["mail"]["tags"]["ses:operation"] == ["SendRawEmail"]
    assert not any(h["name"].upper().startswith("X-SES-") for h in complaint["mail"]["headers"])


def test_v1_simple_send_to_suppressionlist_through_the_data_json_source(
    endpoint: str, clients: Callable[[str], Any], configuration_set: str, feedback_queue: str
) -> None:
    """The path for a moto server in another process: `/moto-api/data.json`."""
    assert isinstance(moto_sent_mail(endpoint, account=ACCOUNT, region=REGION), InProcessMotoMail)
    source = MotoDataJsonMail(endpoint)
    source.new_messages()  # what earlier tests sent is not new
    feedback = SesFeedback(
        events=clients("events"), sesv2=clients("sesv2"), source=source, account=ACCOUNT, region=REGION
    )
    feedback.capture.install(boto3.session.Session())  # not the default session: no leak
    try:
        clients("ses").send_email(
            Source=SENDER,
            Destination={"ToAddresses": ["suppressionlist@simulator.amazonses.com"]},
            Message={"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Hello"}}},
            ConfigurationSetName=configuration_set,
        )
        assert feedback.poll() == []  # moto dropped the configuration set and nothing tells it
        clients("sesv2").create_email_identity(
            EmailIdentity="herald.test", ConfigurationSetName=configuration_set
        )
        clients("ses").send_email(
            Source="alerts@herald.test",
            Destination={"ToAddresses": ["suppressionlist@simulator.amazonses.com"]},
            Message={"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Hello"}}},
        )
        published = feedback.poll()
    finally:
        feedback.capture.uninstall()
        clients("sesv2").delete_email_identity(EmailIdentity="herald.test")
    # the domain identity's default configuration set applies, as in SES
    assert [e["detail-type"] for e in published] == ["Email Sent", "Email Bounced"]
    events = received(clients("sqs"), feedback_queue, 2)
    assert [e["detail-type"] for e in events] == ["Email Sent", "Email Bounced"]
    bounce = events[1]["detail"]["bounce"]
    assert (bounce["bounceType"], bounce["bounceSubType"]) == ("Permanent", "OnAccountSuppressionList")
    assert events[1]["detail"]["mail"]["sourceArn"] == f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/herald.test"


def test_a_send_read_before_its_answer_is_held_until_its_tags_are_known(
    endpoint: str, clients: Callable[[str], Any], configuration_set: str, feedback_queue: str
) -> None:
    """moto records a send while it serves it, before the sender's client has the answer and the
    capture its tags: a poll in between holds the send instead of publishing it without Herald's
    ids (which the feedback function would ignore) and losing it."""
    source = InProcessMotoMail(account=ACCOUNT, region=REGION)
    source.new_messages()  # what earlier tests sent is not new
    feedback = SesFeedback(
        events=clients("events"), sesv2=clients("sesv2"), source=source, account=ACCOUNT, region=REGION
    )
    session = boto3.session.Session()  # not the default session: no leak
    feedback.capture.install(session)
    polled_in_between: list[list[dict[str, Any]]] = []
    session.events.register_first(  # runs before the capture's own after-call hook
        "after-call.sesv2.SendEmail", lambda **_: polled_in_between.append(feedback.poll())
    )
    client = session.client("sesv2", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
    try:
        client.send_email(
            FromEmailAddress=SENDER,
            Destination={"ToAddresses": ["bounce@simulator.amazonses.com"]},
            Content={"Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Hello"}}}},
            ConfigurationSetName=configuration_set,
            EmailTags=[{"Name": "notification_id", "Value": "n-held"}],
        )
        published = feedback.poll()
    finally:
        feedback.capture.uninstall()
    assert polled_in_between == [[]]  # moto had it, its tags were not known yet: held
    assert [e["detail-type"] for e in published] == ["Email Sent", "Email Bounced"]
    assert published[1]["detail"]["mail"]["tags"]["notification_id"] == ["n-held"]
    assert published[1]["detail"]["mail"]["tags"]["ses:configuration-set"] == [configuration_set]
