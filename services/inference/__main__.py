"""Entry point: `python -m services.inference`."""

from runtime.main import run_service
from services.inference.app import build
from services.inference.config import Settings

if __name__ == "__main__":
    run_service("inference", Settings, build)
