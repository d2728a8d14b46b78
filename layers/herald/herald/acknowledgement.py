"""Acknowledgements (decision 019): the person answered a notification, so its escalation ends.

An acknowledgement is `POST /v1/me/notifications/{id}/ack`, or reading the notification
(`.../read`: reading is acknowledging). Either is one conditional UpdateItem on the notification
record (`herald.inbox.Inbox.mark`): `acked_at` is set once and never moves. When the record holds
a `task_token` (an escalation step waits for its acknowledgement: the sender stored it with its
claim), Step Functions is told `SendTaskSuccess` with that token, so the execution ends and no
further step is sent; then the token is removed, only if it is still the same one (a newer step's
token is never removed by an older acknowledgement).

Both orders of the race with a step's sender end the chain, because each side is one write on the
same item: a sender that claims first has written its token, which the acknowledgement then
finds; a sender that claims after the acknowledgement finds `acked_at` (its claim is conditional
on it, `herald.delivery`), sends nothing and answers its own token (`answer_task`).

A late answer is harmless: Step Functions says `TaskTimedOut`, `InvalidToken` or
`TaskDoesNotExist` when the escalation already moved on or ended, and the person still gets 2xx.
A second acknowledgement finds no token and calls nothing. An answer that failed otherwise (a
throttle, an outage) leaves the token on the record, so the app's retry answers it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from herald.inbox import Inbox, InboxEntry, Mark
from herald.stores.dynamo import to_attributes
from herald.stores.notifications import stamp

logger = Logger(child=True)

# Task tokens the state machine no longer waits for: the escalation already moved on or ended.
FINISHED_TASK_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


class Via(StrEnum):
    """What acknowledged the notification (the task's output says so)."""

    ACK = "ack"  # POST .../ack
    READ = "read"  # POST .../read
    SENDER = "sender"  # a step's sender found the notification already acknowledged
    DELIVERED = "delivered"  # a step whose delivery ends the chain was delivered (decision 021)


def task_output(acked_at: str, via: Via) -> str:
    """What the waiting step returns: small, and no notification data (it lands in the history)."""
    return json.dumps({"acknowledged_at": acked_at, "via": via.value}, separators=(",", ":"))


def answer_task(sfn: Any, task_token: str, acked_at: str, via: Via) -> bool:
    """`SendTaskSuccess` for an escalation step. True when a waiting step took it; False when the
    escalation had already moved on or ended (harmless). Other errors are raised."""
    try:
        sfn.send_task_success(taskToken=task_token, output=task_output(acked_at, via))
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code not in FINISHED_TASK_ERRORS:
            raise
        logger.info("acknowledged after the escalation moved on", extra={"error": code, "via": via.value})
        return False
    return True


@dataclass(frozen=True)
class Acknowledged:
    entry: InboxEntry  # the notification as the person now sees it (`record.acked_at` set)
    ended_escalation: bool  # this call ended a waiting escalation step


class Acknowledgements:
    def __init__(self, client: Any, notifications_table: str, users_table: str, sfn: Any) -> None:
        self._client = client
        self._table = notifications_table
        self._inbox = Inbox(client, notifications_table, users_table)
        self._sfn = sfn

    def acknowledge(
        self, user_id: str, notification_id: str, *, via: Via = Via.ACK, now: datetime | None = None
    ) -> Acknowledged | None:
        """Acknowledge (`Via.READ`: and mark read) the caller's own inbox notification; None when
        the caller has no such notification. Idempotent: the first `acked_at` is kept."""
        at = now or datetime.now(UTC)
        marked = self._inbox.mark(user_id, notification_id, Mark.READ if via is Via.READ else Mark.ACK, at)
        if marked is None:
            return None
        if not marked.task_token:
            return Acknowledged(entry=marked.entry, ended_escalation=False)
        acked_at = marked.entry.record.acked_at or at
        ended = answer_task(self._sfn, marked.task_token, stamp(acked_at), via)
        self._forget_token(user_id, notification_id, marked.task_token)
        logger.info(
            "escalation acknowledged",
            extra={"notification_id": notification_id, "via": via.value, "ended": ended},
        )
        return Acknowledged(entry=marked.entry, ended_escalation=ended)

    def _forget_token(self, user_id: str, notification_id: str, task_token: str) -> None:
        """Remove the answered token, only if it is still the one answered."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_attributes({"user_id": user_id, "notification_id": notification_id}),
                UpdateExpression="REMOVE task_token",
                ConditionExpression="task_token = :token",
                ExpressionAttributeValues=to_attributes({":token": task_token}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return  # a newer step's token: it is not ours to remove
            # the escalation was answered; a token left behind is answered again, harmlessly, by a
            # later acknowledgement (the step's task no longer exists)
            logger.exception(
                "could not remove the answered task token", extra={"notification_id": notification_id}
            )
