"""Entry point: `python -m services.tuner`."""

from runtime.main import run_service
from services.tuner.app import build
from services.tuner.config import Settings

if __name__ == "__main__":
    run_service("tuner", Settings, build)
