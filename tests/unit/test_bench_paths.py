"""`make bench`'s cost model and price file (local/bench_paths.py, local/prices.json): the prices the
cost function uses are the file's, dated and sourced; provider fees never enter Herald's own cost;
DynamoDB request units follow the item-size rules; the targets and the table read the report.
Nothing here times anything: the thresholds are checked by the benchmark itself."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pytest

from local import bench_paths as bp
from local.bench_paths import (
    PATHS,
    TARGETS,
    Call,
    CpuLedger,
    IndexSpec,
    InvocationCost,
    TableSpec,
    Window,
    attribute_value_size,
    check_targets,
    cost_breakdown,
    dynamodb_units,
    format_paths,
    index_write_units,
    item_size,
    lambda_billed_seconds,
    load_prices,
    provider_fees,
    read_units,
    tables_from_template,
    updated_attributes,
    vendor_costs,
    window_figures,
    write_units,
)
from tests.support.aws import REPO_ROOT
from tools.cfn_yaml import load_template

pytestmark = pytest.mark.unit

PRICES = load_prices()
NOTIFICATIONS = TableSpec(
    "NotificationsTable",
    ("user_id", "notification_id"),
    (
        IndexSpec("ByCreated", ("user_id", "created_at"), "ALL"),
        IndexSpec("Unread", ("user_id", "unread_at"), "INCLUDE", frozenset({"seen_at"})),
        IndexSpec("ByNotification", ("notification_id",), "KEYS_ONLY"),
    ),
)


def s(text: str) -> dict[str, str]:
    return {"S": text}


# -- the price file ------------------------------------------------------------------------------


def test_the_price_file_is_dated_and_every_price_has_a_unit_and_a_source() -> None:
    # GIVEN the shipped price file
    # THEN it says when the prices were read, and where each one comes from
    checked = re.match(r"^(\d{4}-\d{2}-\d{2})", PRICES["checked"])
    assert checked, PRICES["checked"]
    assert date.fromisoformat(checked.group(1)) <= date.today()
    assert PRICES["region"] == "us-east-1"
    for section in ("aws", "providers", "vendors"):
        for name, price in PRICES[section].items():
            assert isinstance(price["usd"], int | float) and price["usd"] >= 0, name
            assert price["per"] and price["what"], name
            assert price["source"].startswith("https://"), name


def test_cost_of_one_unit_of_each_aws_price_is_that_price_per_million() -> None:
    # GIVEN one unit of every AWS price, per notification
    usage = dict.fromkeys(PRICES["aws"], 1.0)

    # WHEN the cost function prices it
    costs = cost_breakdown(usage, PRICES)

    # THEN each line is the file's price, times a million notifications
    assert costs == {key: pytest.approx(price["usd"] * 1e6) for key, price in PRICES["aws"].items()}


@pytest.mark.parametrize("fee", ["ses_email", "twilio_sms_us", "knock", "provider_call_ms"])
def test_provider_fees_vendor_prices_and_assumptions_are_never_herald_costs(fee: str) -> None:
    with pytest.raises(KeyError, match=fee):
        cost_breakdown({"lambda_request": 1.0, fee: 1.0}, PRICES)


def test_every_provider_the_sandboxes_count_has_its_fee_in_the_file_or_none() -> None:
    for provider, fee in bp.PROVIDER_FEES.items():
        assert fee is None or fee in PRICES["providers"], provider
    fees = provider_fees({"ses": 1.0, "twilio": 2.0, "webhook": 1.0}, PRICES)
    assert fees == {
        "ses": pytest.approx(PRICES["providers"]["ses_email"]["usd"] * 1e6),
        "twilio": pytest.approx(2 * PRICES["providers"]["twilio_sms_us"]["usd"] * 1e6),
    }


def test_vendors_are_priced_per_channel_message_and_per_run() -> None:
    # critical: push + SMS + email = three Knock messages, one Novu run
    assert vendor_costs(3.0, PRICES) == {
        "knock": pytest.approx(3 * 0.005 * 1e6),
        "novu": pytest.approx(1.20 / 1000 * 1e6),
    }


# -- Lambda duration ---------------------------------------------------------------------------


def test_cpu_is_stretched_to_the_memorys_share_of_a_vcpu_and_waits_split_by_concurrency() -> None:
    assumptions = PRICES["assumptions"]
    full = assumptions["lambda_vcpu_full_memory_mb"]["value"]
    aws_ms, provider_ms = assumptions["aws_call_ms"]["value"], assumptions["provider_call_ms"]["value"]

    def billed(**kw: Any) -> float:
        given = {
            "cpu_seconds": 0.010,
            "memory_mb": 512,
            "aws_calls": 0,
            "provider_calls": 0,
            "concurrency": 1,
        }
        return lambda_billed_seconds(**(given | kw), assumptions=assumptions)

    assert billed() == pytest.approx(0.010 * full / 512)
    assert billed(memory_mb=1769) == pytest.approx(0.010)
    assert billed(memory_mb=3008) == pytest.approx(0.010)  # never faster than one core measured here
    assert billed(cpu_seconds=0, aws_calls=10, provider_calls=10) == pytest.approx(
        (10 * aws_ms + 10 * provider_ms) / 1000
    )
    assert billed(cpu_seconds=0, aws_calls=10, provider_calls=10, concurrency=10) == pytest.approx(
        (aws_ms + provider_ms) / 1000
    )


# -- DynamoDB item sizes and request units -------------------------------------------------------


def test_item_size_counts_names_and_values_by_dynamodbs_rules() -> None:
    assert attribute_value_size(s("héllo")) == 6  # UTF-8 bytes
    assert attribute_value_size({"N": "123"}) == 3  # 3 digits: 2 bytes + 1
    assert attribute_value_size({"N": "-0.00120"}) == 2  # significant digits only
    assert attribute_value_size({"BOOL": True}) == 1
    assert attribute_value_size({"NULL": True}) == 1
    assert attribute_value_size({"B": b"\x00\x01"}) == 2
    assert attribute_value_size({"L": [s("ab"), s("c")]}) == 3 + (1 + 2) + (1 + 1)
    assert attribute_value_size({"M": {"k": s("vv")}}) == 3 + 1 + 1 + 2
    assert attribute_value_size({"SS": ["a", "bc"]}) == 3
    assert item_size({"user_id": s("u1"), "n": {"N": "7"}}) == (7 + 2) + (1 + 2)


def test_writes_round_up_to_a_kilobyte_and_reads_to_four_with_eventual_consistency_half() -> None:
    assert [write_units(0), write_units(1024), write_units(1025)] == [1, 1, 2]
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=True) == 2
    assert read_units(100, consistent=False) == 0.5


def test_a_put_writes_its_item_and_every_index_it_belongs_to() -> None:
    # GIVEN a 1.5 KB notification, in the ALL-projected LSI, the INCLUDE GSI and the KEYS_ONLY GSI
    item = {
        "user_id": s("u1"),
        "notification_id": s("n1"),
        "created_at": s("2026-12-01"),
        "unread_at": s("2026-12-01"),
        "body": s("x" * 1400),
    }
    size = item_size(item)
    assert 1024 < size <= 2048

    # WHEN the router puts it
    units = dynamodb_units(
        "PutItem",
        {"TableName": "notifications", "Item": item},
        {},
        tables={"notifications": NOTIFICATIONS},
        final_items={},
    )

    # THEN 2 WRU for the item, 2 for the LSI's full copy, 1 each for the keys-only and INCLUDE entries
    assert (units.write, units.index_write, units.read) == (2, 2 + 1 + 1, 0)
    assert units.by_index == {
        "NotificationsTable.ByCreated": 2,
        "NotificationsTable.Unread": 1,
        "NotificationsTable.ByNotification": 1,
    }


def test_an_update_is_sized_by_the_item_it_leaves_and_touches_only_the_indexes_it_changes() -> None:
    key = {"user_id": s("u1"), "notification_id": s("n1")}
    final = {
        **key,
        "created_at": s("2026-12-01"),
        "deliveries": {"M": {"push": s("sent")}},
        "pad": s("y" * 2100),
    }
    request = {
        "TableName": "notifications",
        "Key": key,
        "UpdateExpression": "SET #d.#c = :state REMOVE unread_at",
        "ExpressionAttributeNames": {"#d": "deliveries", "#c": "push"},
    }
    tables = {"notifications": NOTIFICATIONS}
    finals = {("notifications", bp._key_of(NOTIFICATIONS, key)): final}

    units = dynamodb_units("UpdateItem", request, {}, tables=tables, final_items=finals)

    # 3 WRU (2.2 KB) for the item, 3 for the LSI's copy, 1 for leaving the Unread index; the
    # keys-only index is untouched
    assert (units.write, units.index_write) == (3, 3 + 1)
    # a failed conditional update is still charged, but writes no index
    failed = dynamodb_units(
        "UpdateItem",
        request,
        {"Error": {"Code": "ConditionalCheckFailedException"}},
        tables=tables,
        final_items=finals,
    )
    assert (failed.write, failed.index_write) == (3, 0)


def test_a_transaction_doubles_its_writes_and_a_condition_check_is_billed_as_one() -> None:
    key = {"pk": s("rate#u1")}
    table = TableSpec("RateCountersTable", ("pk",))
    units = dynamodb_units(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Update": {"TableName": "rates", "Key": key, "UpdateExpression": "ADD n :one"}},
                {
                    "ConditionCheck": {
                        "TableName": "rates",
                        "Key": {"pk": s("other")},
                        "ConditionExpression": "x",
                    }
                },
            ]
        },
        {},
        tables={"rates": table},
        final_items={("rates", bp._key_of(table, key)): {**key, "n": {"N": "1"}}},
    )
    assert (units.write, units.index_write) == (2 + 2, 0)


def test_batch_get_costs_every_key_asked_for_found_or_not() -> None:
    table = TableSpec("UsersTable", ("pk", "sk"))
    found = {"pk": s("u1"), "sk": s("profile"), "blob": s("z" * 5000)}
    units = dynamodb_units(
        "BatchGetItem",
        {
            "RequestItems": {
                "users": {"Keys": [{"pk": s("u1"), "sk": s("profile")}, {"pk": s("u2"), "sk": s("profile")}]}
            }
        },
        {"Responses": {"users": [found]}},
        tables={"users": table},
        final_items={},
    )
    assert units.read == 1.0 + 0.5  # 5 KB eventually consistent, and the minimum for the missing one


def test_updated_attributes_are_the_top_level_names_an_expression_changes() -> None:
    names = {"#s": "status", "#d": "deliveries", "#c": "email"}
    expression = (
        "SET #s = :s, #d.#c = if_not_exists(#d.#c, :new), log = list_append(log, :e) "
        "REMOVE digest_due_at ADD n :one"
    )
    assert updated_attributes(expression, names) == {"status", "deliveries", "log", "digest_due_at", "n"}


def test_keys_only_and_include_indexes_are_written_only_when_touched() -> None:
    item = {"user_id", "notification_id", "created_at", "unread_at"}
    assert index_write_units(NOTIFICATIONS, size=100, attributes=item, touched={"status"}) == 1  # the LSI
    assert index_write_units(NOTIFICATIONS, size=100, attributes=item, touched={"seen_at"}) == 2  # + Unread
    assert index_write_units(NOTIFICATIONS, size=100, attributes=item - {"unread_at"}, touched=None) == 2


def test_the_templates_tables_and_indexes_are_read_from_template_yaml() -> None:
    tables = tables_from_template(load_template(REPO_ROOT / "template.yaml"))
    notifications = tables["NotificationsTable"]
    assert notifications.keys == ("user_id", "notification_id")
    assert {i.name: i.projection for i in notifications.indexes}["ByCreated"] == "ALL"


# -- a window's figures: every usage line is a price of the file ---------------------------------


def test_a_windows_figures_price_every_usage_line_and_add_up() -> None:
    # GIVEN a batch of 2: the router (1 invocation, a put per notification, one SQS batch), one push
    # sender invocation and its two FCM deliveries, one SES send, a 2-transition execution
    key = {"user_id": s("u1"), "notification_id": s("n1")}
    item = {**key, "created_at": s("2026-12-01"), "body": s("x" * 500)}
    calls = [
        Call("RouterFunction", "dynamodb", "PutItem", {"TableName": "notifications", "Item": item}, {}, 1),
        Call("RouterFunction", "dynamodb", "PutItem", {"TableName": "notifications", "Item": item}, {}, 1),
        Call(
            "RouterFunction",
            "sqs",
            "SendMessageBatch",
            {"QueueUrl": "push", "Entries": [{"MessageBody": "{}"}, {"MessageBody": "{}"}]},
            {},
            1,
        ),
        Call("EmailSenderFunction", "sesv2", "SendEmail", {}, {"MessageId": "m"}, 3),
    ]
    window = Window(
        path="medium_push",
        size=2,
        seconds=1.0,
        calls=Counter((c.function, f"{c.service}:{c.operation}") for c in calls),
        recorded=calls,
        invocations=[
            InvocationCost(1, "RouterFunction", 2, "sqs", 0.004, 0.0, 0.01, 0),
            InvocationCost(2, "PushSenderFunction", 2, "sqs", 0.010, 0.0, 0.02, 2),
            InvocationCost(3, "EmailSenderFunction", 1, "sqs", 0.002, 0.0, 0.01, 0),
        ],
        sandbox=Counter({"fcm": 2}),
        transitions=2,
        executions=1,
        log_bytes=2000,
        final_items={("notifications", bp._key_of(NOTIFICATIONS, key)): item},
    )

    # WHEN its figures are made
    figures = window_figures(
        window,
        {"notifications": NOTIFICATIONS},
        {"RouterFunction": 1024, "PushSenderFunction": 1769, "EmailSenderFunction": 512},
        {"push"},
        90,
        PRICES,
    )

    # THEN the counts are per notification, and the cost is the sum of usage x the file's prices
    assert figures["aws_calls_per_notification"]["value"] == 2.0
    assert figures["router_calls_per_notification"]["value"] == 1.5
    assert figures["transitions_per_notification"]["value"] == 1.0
    assert figures["provider_calls_by_provider"]["value"] == {"fcm": 1.0, "ses": 0.5}
    assert figures["count_check"]["value"] == "equal"
    usage = figures["usage_per_notification"]["value"]
    assert usage["stepfunctions_transition"] == 1.0
    assert usage["eventbridge_event"] == 1.0  # the producer's event
    # SQS: the router's batch, 2 x (receive + delete) per invocation, 5 records received of which 2
    # were the router's own messages: 3 sent by EventBridge / Step Functions
    assert usage["sqs_request"] == pytest.approx((1 + 3 * 2 + 3) / 2)
    # each put: 1 WRU for the item, 1 for the LSI's copy, 1 for the keys-only index entry
    assert usage["dynamodb_write_request_unit"] == pytest.approx((1 + 1 + 1) * 2 / 2)
    expected = sum(amount * PRICES["aws"][k]["usd"] * 1e6 for k, amount in usage.items())
    assert figures["cost_usd_per_million"]["value"] == pytest.approx(expected, abs=1e-3)
    assert figures["vendor_ratio"]["value"]["knock"] == pytest.approx(1.5 * 0.005 * 1e6 / expected, rel=1e-2)
    for name, value in figures.items():
        assert set(value) == {"value", "unit", "how"}, name


# -- targets and the table ---------------------------------------------------------------------------


def report_with(values: dict[str, dict[int, dict[str, float]]]) -> dict[str, Any]:
    """A bench_paths report whose paths have only the figures given (path -> size -> figure -> value)."""
    return {
        "sizes": sorted({size for sizes in values.values() for size in sizes}),
        "paths": {
            path: {
                "sizes": {
                    str(size): {k: {"value": v} for k, v in figures.items()}
                    for size, figures in sizes.items()
                }
            }
            for path, sizes in values.items()
        },
    }


def test_targets_are_met_only_when_every_size_is_at_or_under_the_limit() -> None:
    report = report_with(
        {
            "medium_push": {
                10: {
                    "cost_usd_per_million": 7.9,
                    "router_calls_per_notification": 1.6,
                    "aws_calls_per_notification": 4.0,
                },
                100: {
                    "cost_usd_per_million": 8.1,
                    "router_calls_per_notification": 1.2,
                    "aws_calls_per_notification": 3.0,
                },
            },
        }
    )
    verdicts = {t["target"]: t["met"] for t in check_targets(report)}
    assert verdicts == {
        TARGETS[0].text: False,  # $8.10 at batch 100
        TARGETS[1].text: None,  # high_timeout_email not measured
        TARGETS[2].text: False,  # router 1.6 > 1.5 at batch 10
        TARGETS[3].text: True,  # router 1.2 at batch 100
        TARGETS[4].text: True,  # 4.0 and 3.0 calls
    }
    assert all(t["met"] is None for t in check_targets(report, smoke=True))


def test_the_table_has_a_row_per_path_and_a_column_per_size() -> None:
    figures = {
        "aws_calls_per_notification": 3.5,
        "router_calls_per_notification": 1.4,
        "transitions_per_notification": 2.0,
        "provider_calls_per_notification": 2.0,
        "cpu_ms_per_notification": 12.34,
        "cost_usd_per_million": 21.5,
        "cost_breakdown_usd_per_million": {
            "dynamodb_write_request_unit": 12.0,
            "dynamodb_storage_gb_month": 3.0,
        },
        "provider_fees_usd_per_million": {"ses": 100.0},
        "vendor_ratio": {"knock": 465.1, "novu": 55.8},
    }
    table = format_paths(
        report_with({name: {10: figures, 100: figures} for name in ("critical", "low_email")})
    )
    lines = table.splitlines()
    assert "calls @10" in lines[0] and "calls @100" in lines[0] and "$/M @100" in lines[0]
    rows = [line.split() for line in lines[2:4]]
    assert [r[0] for r in rows] == ["critical", "low_email"]
    assert rows[0][1:] == [
        "3.50",
        "3.50",
        "1.40",
        "1.40",
        "2",
        "2",
        "12.3",
        "21.50",
        "21.50",
        "3.00",
        "100.00",
        "465.1",
        "55.8",
    ]
    assert "DynamoDB writes 56%" in table


def test_there_are_the_ten_paths_of_the_issue() -> None:
    assert {p.name for p in PATHS} == {
        "medium_push",
        "medium_online_realtime",
        "medium_no_device_email",
        "high_acked",
        "high_timeout_email",
        "critical",
        "low_email",
        "system_webhook",
        "digest",
        "ses_bounce_feedback",
    }


# -- CPU: an invocation's threads, not the process's ------------------------------------------------


def burn(seconds: float) -> float:
    """Spin for `seconds` of this thread's CPU; returns the CPU it spent."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass
    return time.thread_time() - started


def test_an_invocation_counts_its_thread_and_its_pool_work_but_not_other_threads() -> None:
    # GIVEN a ledger, and a thread of someone else's (moto's, say) spinning meanwhile
    ledger = CpuLedger(outbox_seq=lambda: 0)
    ledger.install()
    stop = threading.Event()
    other = threading.Thread(target=lambda: [burn(0.001) for _ in iter(stop.is_set, True)], daemon=True)
    spent: dict[str, float] = {}

    def handler(event: Any, context: Any) -> str:
        spent["own"] = burn(0.02)
        with ThreadPoolExecutor(max_workers=2) as pool:
            spent["pool"] = sum(pool.map(burn, [0.02, 0.02]))
        return "ok"

    try:
        other.start()
        # WHEN the wrapped handler runs
        assert ledger.wrap("PushSenderFunction", handler)({"Records": [{}, {}]}, None) == "ok"
    finally:
        stop.set()
        other.join()
        ledger.uninstall()

    # THEN its CPU is its own thread's and its pool's (the other thread's is not there)
    (invocation,) = ledger.invocations
    assert (invocation.function, invocation.records) == ("PushSenderFunction", 2)
    assert spent["own"] + spent["pool"] <= invocation.cpu_seconds < spent["own"] + spent["pool"] + 0.015
    # and the pool is left as it was: work submitted outside an invocation is not tagged
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(burn, 0.001).result()
    assert len(ledger.invocations) == 1


def test_the_figures_in_a_json_round_trip_stay_figures() -> None:
    # the report is written as JSON and read back by local/bench.py
    figure = bp.figure({"a": 1.5}, "calls/notification", "how")
    assert json.loads(json.dumps(figure)) == {"value": {"a": 1.5}, "unit": "calls/notification", "how": "how"}
