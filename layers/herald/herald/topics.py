"""Topics: what a person follows, for broadcasts to `{"topic": …}` (decision 027).

One item per person and topic in the person's Users partition (`sk = TOPIC#<topic>`), with two
layers as for the rest of the profile (decision 016):

- `directory` (bool): the product's directory lists the topic for them (`UserUpserted.topics`,
  written in the directory's version transaction, herald.directory);
- `own` (`joined` / `left`): the person's own choice (`PUT` / `DELETE /v1/me/topics/{topic}`), which
  wins: a person who left a topic stays out when the directory lists it again, and one who joined
  stays in when the directory stops listing it.

Each writer sets only its own attribute, unconditionally, so the two never race; membership is
decided when the audience is read: `own = joined`, or no `own` and `directory = true`. The sparse
`ByTopic` index (`topic` / `user_id`, projecting `own` and `directory`) lists a topic's items a page
at a time (a broadcast's fan-out, never a scan).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from herald.stores.dynamo import from_attributes, to_attributes
from herald.stores.keys import TOPIC_SK_PREFIX, topic_sk, user_pk
from herald.stores.users import PersonErased, not_erased

JOINED = "joined"
LEFT = "left"
MAX_OWN_TOPICS = 50  # topics a person joins themselves (only the catalog's `topics` may be joined)
# Who follows: the person joined, or the directory lists it and the person never chose.
MEMBER_FILTER = "#own = :joined OR (attribute_not_exists(#own) AND #directory = :true)"
MEMBER_NAMES = {"#own": "own", "#directory": "directory"}
MEMBER_VALUES = {":joined": JOINED, ":true": True}


class TopicFollowing(BaseModel):
    """One of the person's topics, as the app API shows it."""

    model_config = ConfigDict(frozen=True)

    topic: str
    following: bool
    by: Literal["you", "directory"]  # whose choice decides it


def following(item: dict[str, Any]) -> bool:
    own = item.get("own")
    return own == JOINED if own is not None else bool(item.get("directory"))


def topic_key(user_id: str, topic: str) -> dict[str, str]:
    return {"pk": user_pk(user_id), "sk": topic_sk(topic)}


def directory_topic_writes(table: str, user_id: str, old: set[str], new: set[str]) -> list[dict[str, Any]]:
    """The directory's part, for its version transaction: `directory` on for the topics it now
    lists, off for the ones it no longer does (the person's `own` choice is never touched)."""
    writes = []
    for topic, listed in [*((t, True) for t in sorted(new - old)), *((t, False) for t in sorted(old - new))]:
        writes.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": to_attributes(topic_key(user_id, topic)),
                    "UpdateExpression": "SET #directory = :listed, topic = :topic, user_id = :user",
                    "ExpressionAttributeNames": {"#directory": "directory"},
                    "ExpressionAttributeValues": to_attributes(
                        {":listed": listed, ":topic": topic, ":user": user_id}
                    ),
                }
            }
        )
    return writes


class TopicStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def choose(
        self, user_id: str, topic: str, choice: Literal["joined", "left"], now: datetime | None = None
    ) -> None:
        """The person joins or leaves `topic` (idempotent). Raises PersonErased after an erasure."""
        at = (now or datetime.now(UTC)).isoformat()
        try:
            self._client.transact_write_items(
                TransactItems=[
                    not_erased(self._table, user_id),
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_attributes(topic_key(user_id, topic)),
                            "UpdateExpression": "SET #own = :choice, own_at = :at, topic = :topic, "
                            "user_id = :user",
                            "ExpressionAttributeNames": {"#own": "own"},
                            "ExpressionAttributeValues": to_attributes(
                                {":choice": choice, ":at": at, ":topic": topic, ":user": user_id}
                            ),
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise PersonErased(f"user {user_id} was erased") from None
            raise

    def of(self, user_id: str) -> list[TopicFollowing]:
        """The person's topics (followed or not: a left one is shown as their choice)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": to_attributes({":pk": user_pk(user_id), ":prefix": TOPIC_SK_PREFIX}),
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            response = self._client.query(**params)
            items += [from_attributes(item) for item in response.get("Items", [])]
            if not response.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        topics = []
        for item in items:
            if item.get("own") is None and not item.get("directory"):
                continue  # the directory dropped it and the person never chose: nothing to show
            by: Literal["you", "directory"] = "you" if item.get("own") is not None else "directory"
            topics.append(TopicFollowing(topic=str(item["topic"]), following=following(item), by=by))
        return sorted(topics, key=lambda t: t.topic)

    def followers(
        self, topic: str, page_size: int, cursor: dict[str, Any] | None = None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of the topic's followers (the `ByTopic` index, filtered to members); returns the
        user ids and the cursor of the next page (None at the end). A page may hold fewer than
        `page_size` ids (members are filtered after the read) and still have a next one."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "ByTopic",
            "KeyConditionExpression": "topic = :topic",
            "FilterExpression": MEMBER_FILTER,
            "ExpressionAttributeNames": MEMBER_NAMES,
            "ExpressionAttributeValues": to_attributes({":topic": topic, **MEMBER_VALUES}),
            "Limit": page_size,
        }
        if cursor:
            params["ExclusiveStartKey"] = cursor
        response = self._client.query(**params)
        user_ids = [str(from_attributes(item)["user_id"]) for item in response.get("Items", [])]
        return user_ids, response.get("LastEvaluatedKey")
