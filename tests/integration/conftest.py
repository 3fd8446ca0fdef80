"""Fixtures shared by the integration tests of one service's several test files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.bus import Bus
from runtime.settings import SharedSettings
from services.tuner.app import build as build_tuner
from services.tuner.config import Settings as TunerSettings


@pytest.fixture
async def tuner(nats_url: str, tmp_path: Path) -> AsyncIterator[Bus]:
    """The tuner service in this process, ticking fast; yields a bus to talk to it."""
    bus = await Bus.connect(nats_url, source="tuner")
    service = await build_tuner(bus, TunerSettings(tick_s=0.2), SharedSettings(data_dir=tmp_path))
    await service.start()
    yield bus
    await service.stop()
    await bus.close()
