"""Headless Chromium for the console tests (Debian chromium + chromium-driver, via selenium)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMEDRIVER = "chromedriver"


def chromium_available() -> bool:
    return shutil.which(CHROMEDRIVER) is not None and (
        shutil.which("chromium") is not None or shutil.which("chromium-browser") is not None
    )


class Browser:
    """One headless Chromium session against a gateway; collects the page's console errors."""

    def __init__(self, base_url: str, *, width: int = 1360, height: int = 900) -> None:
        self.base_url = base_url.rstrip("/")
        options = webdriver.ChromeOptions()
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--window-size={width},{height}",
        ):
            options.add_argument(argument)
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary:
            options.binary_location = binary
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(
            options=options, service=Service(shutil.which(CHROMEDRIVER) or CHROMEDRIVER)
        )
        self.driver.set_page_load_timeout(30)
        self.errors: list[str] = []

    def close(self) -> None:
        self.driver.quit()

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def sign_in(self, api_key: str) -> None:
        self.open("/console/login")
        self.find("#api-key").send_keys(api_key)
        self.find("#sign-in").click()
        self.wait_for(lambda: self.driver.current_url.endswith("/console/"), "the console shell")

    def page(self, name: str, *rest: str, timeout_s: float = 20.0) -> WebElement:
        """Opens a console page (hash route) and waits until it has rendered."""
        path = "/".join((name, *rest))
        self.driver.execute_script("document.getElementById('page').dataset.ready = ''")
        self.driver.execute_script(f"location.hash = {'#/' + path!r}")
        self.wait_for(
            lambda: (
                self.driver.execute_script("return document.getElementById('page').dataset.ready")
                == name
            ),
            f"page {path}",
            timeout_s,
        )
        return self.find(f"section.page[data-page={name}]")

    def find(self, css: str, timeout_s: float = 10.0) -> WebElement:
        found: list[WebElement] = []

        def present() -> bool:
            found[:] = self.driver.find_elements(By.CSS_SELECTOR, css)
            return bool(found) and found[0].is_displayed()

        self.wait_for(present, f"element {css!r}", timeout_s)
        return found[0]

    def all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str, timeout_s: float = 10.0) -> str:
        return str(self.find(css, timeout_s).text)

    def wait_for(self, check: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except WebDriverException as exc:  # a node replaced while we read it: try again
                last = exc
            time.sleep(0.1)
        shown = self.driver.find_elements(By.CSS_SELECTOR, "#page .error")
        errors = "; ".join(e.text for e in shown)
        raise AssertionError(
            f"timed out waiting for {what}"
            + (f"; the page shows: {errors}" if errors else "")
            + (f"; last error: {last}" if last else "")
            + f"; console: {self.console_errors()}"
        )

    def console_errors(self) -> list[str]:
        """Errors the page logged since the last call (SEVERE entries of the browser log)."""
        for entry in self.driver.get_log("browser"):  # type: ignore[no-untyped-call]
            if entry.get("level") == "SEVERE":
                self.errors.append(str(entry.get("message")))
        found, self.errors = self.errors, []
        return found

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
