"""Entry point: `python -m services.image_builder`."""

from runtime.main import run_service
from services.image_builder.app import build
from services.image_builder.config import Settings

if __name__ == "__main__":
    run_service("image_builder", Settings, build)
