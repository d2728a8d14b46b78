"""The context object a handler gets from the Lambda runtime, as the tests hand it in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeContext:
    """`function_name`, the time left (the handlers hand work back before their deadline), and
    what powertools' logger reads."""

    function_name: str = "herald-router"
    seconds_left: float = 60.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = "req-1"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds_left * 1000)
