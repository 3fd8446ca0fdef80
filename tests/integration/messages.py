"""Message types used only by the integration tests."""

from __future__ import annotations

from typing import ClassVar

from contracts.envelope import Command, Message


class Echo(Command):
    message_type: ClassVar[str] = "test.v1.echo"
    text: str
    delay_s: float = 0.0


class Echoed(Message):
    message_type: ClassVar[str] = "test.v1.echoed"
    text: str
    correlation_id: str


class OrderPlaced(Message):
    message_type: ClassVar[str] = "test.v1.order.placed"
    order_id: str
    amount: float
