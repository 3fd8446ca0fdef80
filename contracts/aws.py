"""What every AWS-compatible operation shares: PascalCase field names and the operation table row."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict
from pydantic.alias_generators import to_pascal

from contracts.envelope import Message


class AwsMessage(Message):
    """The AWS service's JSON names (PascalCase) on the wire; Python names inside. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_pascal, populate_by_name=True)


@dataclass(frozen=True)
class AwsOperation:
    """One AWS operation: its bus operation (`<domain>.v1.<bus_operation>`) and request model."""

    name: str
    bus_operation: str
    request: type[AwsMessage]
