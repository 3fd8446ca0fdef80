"""Entry point: `python -m services.fraud`."""

from runtime.main import run_service
from services.fraud.app import build
from services.fraud.config import Settings

if __name__ == "__main__":
    run_service("fraud", Settings, build)
