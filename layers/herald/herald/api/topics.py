"""`/v1/me/topics`: what the caller follows, for broadcasts to a topic (herald.topics does the work).
The caller's own join or leave wins over what the product's directory lists for them."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel

from herald.api.auth import caller_id
from herald.api.errors import Forbidden, NotFound, Unprocessable
from herald.api.services import services
from herald.catalog import load_catalog
from herald.models import AUDIENCE_NAME
from herald.stores.users import PersonErased
from herald.topics import JOINED, LEFT, MAX_OWN_TOPICS, TopicFollowing, TopicStore

router = APIGatewayHttpRouter()

Topic = Annotated[
    str, Path(min_length=1, max_length=64, pattern=AUDIENCE_NAME, description="the topic's name")
]


class Topics(BaseModel):
    topics: list[TopicFollowing]


def _topics() -> TopicStore:
    found = services(router)
    return TopicStore(found.dynamodb, found.tables.users)


def _choose(topic: str, choice: Literal["joined", "left"]) -> TopicFollowing:
    user_id = caller_id(router)
    store = _topics()
    if choice == JOINED:
        if topic not in load_catalog().topics:
            raise Forbidden(f"{topic!r} is not a topic people join themselves (the product assigns it)")
        joined = {t.topic for t in store.of(user_id) if t.following and t.by == "you"}
        if topic not in joined and len(joined) >= MAX_OWN_TOPICS:
            raise Unprocessable(
                f"at most {MAX_OWN_TOPICS} topics joined; leave one first",
                [{"loc": ["path", "topic"], "type": "too_many_topics", "msg": "too many topics joined"}],
            )
    try:
        store.choose(user_id, topic, choice)
    except PersonErased:
        raise NotFound("this person was erased") from None
    return TopicFollowing(topic=topic, following=choice == JOINED, by="you")


@router.get("/me/topics", summary="The caller's topics: followed by their choice or the directory's")
def get_topics() -> Topics:
    return Topics(topics=_topics().of(caller_id(router)))


@router.put("/me/topics/<topic>", summary="Follow a topic (idempotent; wins over the directory)")
def put_topic(topic: Topic) -> TopicFollowing:
    return _choose(topic, JOINED)


@router.delete(
    "/me/topics/<topic>",
    summary="Stop following a topic (idempotent; the directory listing it again does not bring it back)",
)
def delete_topic(topic: Topic) -> TopicFollowing:
    return _choose(topic, LEFT)
