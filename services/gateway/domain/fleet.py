"""What the replicas' health reports add up to, per service (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from contracts.subjects import BACKEND_SERVICES
from contracts.system import ServiceHealth


class ServiceSummary(BaseModel):
    name: str
    replicas: int
    ready_replicas: int
    status: str  # ready | degraded | down
    instances: list[ServiceHealth]


def summarize(reports: Iterable[ServiceHealth]) -> list[ServiceSummary]:
    by_service: dict[str, list[ServiceHealth]] = {name: [] for name in BACKEND_SERVICES}
    for report in reports:
        by_service.setdefault(report.service, []).append(report)
    summaries = []
    for name, instances in by_service.items():
        ready = sum(1 for i in instances if i.ready)
        status = "down" if ready == 0 else ("ready" if ready == len(instances) else "degraded")
        summaries.append(
            ServiceSummary(
                name=name,
                replicas=len(instances),
                ready_replicas=ready,
                status=status,
                instances=sorted(instances, key=lambda i: i.instance_id),
            )
        )
    return summaries


def platform_ready(summaries: Iterable[ServiceSummary]) -> bool:
    """Ready when every back-end service has at least one ready replica."""
    ready = {s.name for s in summaries if s.ready_replicas > 0}
    return all(name in ready for name in BACKEND_SERVICES)
