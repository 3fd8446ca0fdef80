"""Secrets Manager operations of the crawler: each takes its request contract, returns AWS's output.

No reply ever carries a secret's value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.crawl import CreateSecret, DeleteSecret, DescribeSecret, ListSecrets, PutSecretValue
from runtime.errors import Conflict, ValidationFailed
from runtime.kv import ResourceStore
from services.crawler.adapters.secret_store import SecretStore
from services.crawler.domain.records import DELETING, DataSourceRecord
from services.crawler.domain.secrets import SecretRecord
from services.crawler.domain.settings import credential_references

CURRENT = "AWSCURRENT"


class SecretOperations:
    def __init__(self, secrets: SecretStore, sources: ResourceStore[DataSourceRecord]) -> None:
        self.secrets = secrets
        self.sources = sources

    async def users(self, name: str) -> list[DataSourceRecord]:
        """The data sources whose configuration references secret `name` (not those being deleted)."""
        found = []
        for stored in await self.sources.list():
            if stored.value.status == DELETING:
                continue  # it syncs no more: its purge needs no credentials
            for reference in credential_references(stored.value.configuration):
                try:
                    if self.secrets.name_of(reference) == name:
                        found.append(stored.value)
                        break
                except ValidationFailed:
                    continue
        return sorted(found, key=lambda s: (s.index_id, s.name))

    @staticmethod
    def _summary(record: SecretRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ARN": record.arn,
            "Name": record.name,
            "CreatedDate": record.created_at.timestamp(),
            "LastChangedDate": record.changed_at.timestamp(),
        }
        if record.description is not None:
            out["Description"] = record.description
        if record.tags:
            out["Tags"] = record.tags
        return out

    async def create_secret(self, r: CreateSecret) -> dict[str, Any]:
        record = await self.secrets.create(
            r.name,
            r.secret_string,
            description=r.description,
            tags=[t.model_dump(by_alias=True) for t in r.tags],
            client_token=r.client_request_token,
        )
        return {"ARN": record.arn, "Name": record.name, "VersionId": record.version_id}

    async def describe_secret(self, r: DescribeSecret) -> dict[str, Any]:
        record = await self.secrets.get(r.secret_id)
        out = self._summary(record)
        out["VersionIdsToStages"] = {record.version_id: [CURRENT]}
        # Trellis addition: who uses it (a secret in use cannot be deleted).
        out["DataSources"] = [
            {"Id": s.id, "IndexId": s.index_id, "Name": s.name}
            for s in await self.users(record.name)
        ]
        return out

    async def list_secrets(self, r: ListSecrets) -> dict[str, Any]:
        records = await self.secrets.all()
        prefixes = _name_prefixes(r.filters or [])
        if prefixes:
            records = [s for s in records if s.name.startswith(prefixes)]
        if r.sort_order == "desc":
            records.reverse()
        start = 0
        if r.next_token:
            if not r.next_token.isdigit():
                raise ValidationFailed("NextToken is not one this operation returned")
            start = int(r.next_token)
        page = records[start : start + r.max_results]
        out: dict[str, Any] = {"SecretList": [self._summary(s) for s in page]}
        if len(records) > start + r.max_results:
            out["NextToken"] = str(start + r.max_results)
        return out

    async def put_secret_value(self, r: PutSecretValue) -> dict[str, Any]:
        record = await self.secrets.put_value(
            r.secret_id, r.secret_string, client_token=r.client_request_token
        )
        return {
            "ARN": record.arn,
            "Name": record.name,
            "VersionId": record.version_id,
            "VersionStages": [CURRENT],
        }

    async def delete_secret(self, r: DeleteSecret) -> dict[str, Any]:
        record = await self.secrets.get(r.secret_id)
        users = await self.users(record.name)
        if users:
            names = ", ".join(f"{s.name} ({s.id}, index {s.index_id})" for s in users)
            raise Conflict(
                f"secret {record.name} is used by data sources {names}: remove it from their "
                "configuration (or delete them) first",
                kind="secret",
                id=record.name,
            )
        await self.secrets.delete(record.name)
        return {
            "ARN": record.arn,
            "Name": record.name,
            "DeletionDate": datetime.now(UTC).timestamp(),
        }


def _name_prefixes(filters: list[dict[str, Any]]) -> tuple[str, ...]:
    """ListSecrets Filters: only `name` (prefix match, like Secrets Manager's) is supported."""
    prefixes: list[str] = []
    for item in filters:
        key, values = item.get("Key"), item.get("Values")
        if key != "name":
            raise ValidationFailed(f"Filters: only the key 'name' is supported, got {key!r}")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValidationFailed("Filters: Values must be a list of strings")
        if set(item) - {"Key", "Values"}:
            raise ValidationFailed("Filters: each filter has only Key and Values")
        prefixes.extend(values)
    return tuple(prefixes)
