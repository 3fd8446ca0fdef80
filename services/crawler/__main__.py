"""Entry point: `python -m services.crawler`."""

from runtime.main import run_service
from services.crawler.app import build
from services.crawler.config import Settings

if __name__ == "__main__":
    run_service("crawler", Settings, build)
