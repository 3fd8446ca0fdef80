"""Entry point: `python -m services.indexer`."""

from runtime.main import run_service
from services.indexer.app import build
from services.indexer.config import Settings

if __name__ == "__main__":
    run_service("indexer", Settings, build)
