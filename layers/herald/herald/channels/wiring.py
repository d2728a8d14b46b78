"""Cold-start wiring shared by the five sender functions (they stay thin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from herald.batch import RejectingBatchProcessor
from herald.catalog import load_catalog
from herald.channels.context import ChannelDeliverer
from herald.channels.outage import Backoff, OutageBudget
from herald.channels.sender import ChannelRecord, ChannelSender, MetricsSink, peek_event_id
from herald.channels.settings import SenderSettings
from herald.delivery import DeliveryLedger
from herald.devices import Devices
from herald.stores.suppression import SuppressionStore
from herald.stores.users import UserStore


@dataclass(frozen=True)
class Stores:
    ledger: DeliveryLedger
    users: UserStore
    suppression: SuppressionStore
    devices: Devices


def stores_for(settings: SenderSettings, dynamodb: Any) -> Stores:
    return Stores(
        ledger=DeliveryLedger(
            dynamodb,
            settings.notifications_table,
            retention_days=settings.notification_retention_days,
            users_table=settings.users_table,  # an erased person's tombstone (decision 017)
        ),
        users=UserStore(dynamodb, settings.users_table),
        suppression=SuppressionStore(dynamodb, settings.suppression_table),
        devices=Devices(dynamodb, settings.users_table),
    )


def sender_for(
    deliverer: ChannelDeliverer,
    settings: SenderSettings,
    stores: Stores,
    *,
    sqs: Any,
    sfn: Any | None = None,
    metrics: MetricsSink | None = None,
) -> ChannelSender:
    return ChannelSender(
        deliverer,
        ledger=stores.ledger,
        users=stores.users,
        suppression=stores.suppression,
        devices=stores.devices,
        catalog=load_catalog(),
        sqs=sqs,
        queue_url=settings.queue_url,
        sfn=sfn,
        metrics=metrics,
        outage=OutageBudget(
            tolerance_seconds=settings.provider_outage_tolerance_seconds,
            backoff=Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
        ),
        max_receive_count=settings.max_receive_count,
        dead_letter_queue_url=settings.dead_letter_queue_url,
        # A send may take a few provider calls (e.g. SES then SendGrid on failover).
        deadline_margin_seconds=3 * settings.provider_timeout_seconds + 2,
    )


def processor_for(
    settings: SenderSettings, *, sqs: Any, logger: Logger, metrics: MetricsSink | None = None
) -> RejectingBatchProcessor:
    """SQS batches of ChannelRecords; a record that can never succeed goes to the DLQ at once."""

    def rejected(reason: str) -> None:
        if metrics is not None:
            metrics.add_metric(name="RecordsRejected", unit="Count", value=1)

    return RejectingBatchProcessor(
        model=ChannelRecord,
        sqs=sqs,
        dead_letter_queue_url=lambda: settings.dead_letter_queue_url,
        logger=logger,
        event_id_of=peek_event_id,
        on_rejected=rejected,
    )
