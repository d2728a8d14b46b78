"""`/v1/me/topics` through the template's routes and JWT authorizer into the API function, on moto:
the caller's own join or leave wins over the product directory's listing, in both orders; an erased
person's choice is refused; a broadcast's audience reads the same items (herald.topics)."""

from __future__ import annotations

from typing import Any

import pytest

from herald.directory import Directory, UserDeleted, UserUpserted
from herald.topics import TopicStore
from tests.support.api import ApiClient
from tests.support.stack import MotoStack

pytestmark = pytest.mark.integration


def directory(stack: MotoStack, user: str, version: int, topics: list[str]) -> None:
    assert Directory(stack.client("dynamodb"), stack.tables["UsersTable"]).apply(
        UserUpserted.model_validate({"user_id": user, "version": version, "topics": topics})
    )


def followers(stack: MotoStack, topic: str) -> list[str]:
    ids, cursor = TopicStore(stack.client("dynamodb"), stack.tables["UsersTable"]).followers(topic, 100)
    assert cursor is None
    return sorted(ids)


def listed(api: ApiClient, user: str = "u1") -> dict[str, Any]:
    answer = api.get("/v1/me/topics", user=user)
    assert answer.status == 200, answer.json
    return {t["topic"]: (t["following"], t["by"]) for t in answer.json["topics"]}


def test_joining_and_leaving_are_the_callers_and_idempotent(api: ApiClient, stack: MotoStack) -> None:
    for _ in range(2):
        joined = api.put("/v1/me/topics/deals", user="u1")
        assert joined.status == 200, joined.json
        assert joined.json == {"topic": "deals", "following": True, "by": "you"}
    assert followers(stack, "deals") == ["u1"]
    assert listed(api) == {"deals": (True, "you")}

    for _ in range(2):
        left = api.delete("/v1/me/topics/deals", user="u1")
        assert left.status == 200 and left.json["following"] is False
    assert followers(stack, "deals") == []
    assert listed(api) == {"deals": (False, "you")}
    assert listed(api, user="u2") == {}  # another person's topics are not the caller's


def test_the_callers_choice_wins_over_the_directory_in_either_order(api: ApiClient, stack: MotoStack) -> None:
    # the directory lists news and sport; the person leaves news, joins deals
    directory(stack, "u1", 1, ["news", "sport"])
    assert listed(api) == {"news": (True, "directory"), "sport": (True, "directory")}
    assert api.delete("/v1/me/topics/news", user="u1").status == 200
    assert api.put("/v1/me/topics/deals", user="u1").status == 200
    # the directory drops both, then lists news and deals again (a write to the items the person
    # already chose on, after their choice)
    directory(stack, "u1", 2, [])
    directory(stack, "u1", 3, ["news", "deals"])

    assert listed(api) == {"news": (False, "you"), "deals": (True, "you")}
    assert followers(stack, "news") == followers(stack, "sport") == []
    assert followers(stack, "deals") == ["u1"]


def test_a_topic_name_is_checked_and_an_erased_person_chooses_nothing(
    api: ApiClient, stack: MotoStack
) -> None:
    assert api.put("/v1/me/topics/not%20a%20topic", user="u1").status == 422
    directory(stack, "u9", 1, [])
    Directory(stack.client("dynamodb"), stack.tables["UsersTable"]).apply(
        UserDeleted.model_validate({"user_id": "u9", "version": 2})
    )
    assert api.put("/v1/me/topics/deals", user="u9").status == 404
    assert followers(stack, "deals") == []


def test_only_the_catalogs_topics_are_joined_by_people_themselves(api: ApiClient, stack: MotoStack) -> None:
    # "team-42" is the product's to assign: joining it is refused, leaving it is the person's right
    refused = api.put("/v1/me/topics/team-42", user="u1")
    assert refused.status == 403 and "the product assigns it" in refused.json["error"]["message"]
    assert followers(stack, "team-42") == []
    directory(stack, "u1", 1, ["team-42"])
    assert api.delete("/v1/me/topics/team-42", user="u1").status == 200
    assert followers(stack, "team-42") == []


def test_the_directory_keeps_roles_and_topics_within_one_transaction() -> None:
    with pytest.raises(ValueError, match="at most 48 roles and topics together"):
        UserUpserted.model_validate(
            {
                "user_id": "u1",
                "version": 1,
                "roles": [f"r{i}" for i in range(30)],
                "topics": [f"t{i}" for i in range(19)],
            }
        )
