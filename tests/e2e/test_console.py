"""The web console in headless Chromium against the whole platform (`trellis up`).

Each page loads without console errors, and the main flows click through: a web-crawler source
synced and searched, a fraud model trained and its threshold moved, a tuning job run, an image
attached to a domain. Screenshots of the pages go to docs/screenshots/ (the README shows them),
or to TRELLIS_SCREENSHOTS=DIR when set.
"""

from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from services.image_builder.adapters.contexts import pack_context
from tests.e2e.browser import Browser, chromium_available
from tests.e2e.stack import Stack, running_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not chromium_available(), reason="chromium and chromium-driver (make test installs them)"
    ),
]
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "afd-samples"
PAGES = ("overview", "search", "sources", "fraud", "tuning", "images", "models")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("console") / "var"
    with running_stack(data_dir, {"TRELLIS_CRAWLER_ALLOWED_NETWORKS": "127.0.0.0/8"}) as running:
        yield running


@pytest.fixture(scope="module")
def screenshots() -> Path:
    chosen = os.environ.get("TRELLIS_SCREENSHOTS")
    return Path(chosen) if chosen else Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    opened = Browser(stack.url)
    try:
        opened.sign_in(stack.credentials["api_key"])
        yield opened
        assert opened.console_errors() == []
    finally:
        opened.close()


def test_a_wrong_key_does_not_sign_in(stack: Stack) -> None:
    browser = Browser(stack.url)
    try:
        browser.open("/console/")
        browser.find("#api-key").send_keys("tra_wrong.key")
        browser.find("#sign-in").click()
        assert "not valid" in browser.text("#login-error")
        browser.open("/console/static/app.js")
        browser.wait_for(lambda: "sign in first" in browser.driver.page_source, "the refusal")
    finally:
        browser.close()


def test_every_page_loads_without_console_errors(browser: Browser, screenshots: Path) -> None:
    for name in PAGES:
        page = browser.page(name)
        assert page.text.strip(), f"page {name} is empty"
        assert not browser.all("#page .error"), f"page {name} shows an error"
        assert browser.console_errors() == [], f"console errors on page {name}"
        browser.screenshot(screenshots / f"{name}.png")
    overview = browser.page("overview")
    assert "6 / 6" in overview.text  # every back-end service ready
    models = browser.page("models")
    assert "all-minilm-l6-v2" in models.text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small web site on loopback for the crawler."""
    root = tmp_path_factory.mktemp("site")
    pages = {
        "index.html": ("Garden handbook", "Welcome.", ["herbs.html", "trees.html"]),
        "herbs.html": ("Herbs", "Basil wants warm soil and full sun.", []),
        "trees.html": ("Trees", "Cedars grow slowly and live for centuries.", []),
    }
    for name, (title, text, links) in pages.items():
        anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
        (root / name).write_text(
            f"<html><head><title>{title}</title></head>"
            f"<body><main><h1>{title}</h1><p>{text}</p>{anchors}</main></body></html>"
        )
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_create_a_source_sync_it_and_search(browser: Browser, site: str, screenshots: Path) -> None:
    browser.page("sources")
    browser.find("#sources-create-index")
    browser.find("#index-name").send_keys("garden")
    browser.find("#index-create").click()
    browser.find("#sources-new").click()
    browser.find("#source-name").send_keys("garden-site")
    browser.find("#source-seed-urls").send_keys(site)
    browser.find("#source-save").click()
    browser.find("#source-sync-now").click()
    row = browser.wait_for(
        lambda: browser.all("tr.sync-row[data-status=SUCCEEDED]"), "a successful sync", 60
    )
    assert row[0].find_element(By.CSS_SELECTOR, ".metric-added").text == "3"
    browser.screenshot(screenshots / "source.png")

    browser.page("search")
    query = browser.find("#search-query")
    query.send_keys("cedars centuries")
    browser.wait_for(  # documents reach the index shortly after the sync
        lambda: _searched(browser, "trees.html"), "the crawled page in the results", 60
    )
    assert browser.all("#search-result-list mark")  # the matched words are highlighted
    browser.screenshot(screenshots / "search.png")


def test_credentials_are_stored_and_never_shown(browser: Browser) -> None:
    browser.page("sources")
    browser.find("#secrets summary").click()
    browser.find("#secret-name").send_keys("intranet-login")
    browser.find("#secret-username").send_keys("crawler")
    browser.find("#secret-password").send_keys("s3cret-Pa55word")
    browser.find("#secret-create").click()
    browser.wait_for(lambda: "intranet-login" in browser.text("#secrets-list"), "the secret")
    assert "arn:aws:secretsmanager:" in browser.text("#secrets-list")
    assert "s3cret-Pa55word" not in browser.driver.page_source
    browser.find("#secrets-list button[data-secret='intranet-login']").click()
    browser.wait_for(lambda: "intranet-login" not in browser.text("#secrets-list"), "deleted")


def _searched(browser: Browser, expected: str) -> bool:
    browser.find("#search-submit").click()
    time.sleep(0.5)
    return any(expected in item.text for item in browser.all("#search-result-list li.result"))


def _aws(stack: Stack, service: str) -> Any:
    credentials = stack.credentials
    return boto3.client(
        service,
        endpoint_url=stack.url,
        region_name="us-east-1",
        aws_access_key_id=credentials["access_key_id"],
        aws_secret_access_key=credentials["secret_access_key"],
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def _rest(stack: Stack) -> httpx.Client:
    headers = {"Authorization": f"Bearer {stack.credentials['api_key']}"}
    return httpx.Client(base_url=stack.url, headers=headers, timeout=120)


def _stored_registrations(stack: Stack) -> None:
    """AFD's registration sample as stored events of an event type, and a model to train."""
    afd = _aws(stack, "frauddetector")
    for name, kind in (("ip_address", "IP_ADDRESS"), ("email_address", "EMAIL_ADDRESS")):
        afd.create_variable(
            name=name,
            dataType="STRING",
            dataSource="EVENT",
            defaultValue="unknown",
            variableType=kind,
        )
    afd.put_entity_type(name="customer")
    for label in ("fraud", "legit"):
        afd.put_label(name=label)
    afd.put_event_type(
        name="registration",
        eventVariables=["ip_address", "email_address"],
        labels=["fraud", "legit"],
        entityTypes=["customer"],
        eventIngestion="ENABLED",
    )
    rows = list(csv.DictReader((SAMPLES / "registration_data_20K_minimum.csv").open()))
    out = io.StringIO()
    writer = csv.DictWriter(
        out, ["EVENT_ID", "ENTITY_TYPE", "ENTITY_ID", *rows[0]], lineterminator="\n"
    )
    writer.writeheader()
    for i, row in enumerate(rows):
        writer.writerow(
            {"EVENT_ID": f"reg-{i}", "ENTITY_TYPE": "customer", "ENTITY_ID": f"c-{i}", **row}
        )
    with _rest(stack) as rest:
        uploaded = rest.put("/v1/fraud/uploads/registrations.csv", content=out.getvalue())
        assert uploaded.status_code == 200, uploaded.text
    afd.create_batch_import_job(
        jobId="registrations",
        inputPath=uploaded.json()["location"],
        outputPath=f"file://{stack.data_dir / 'fraud' / 'imports'}",
        eventTypeName="registration",
        iamRoleArn="arn:aws:iam::000000000000:role/none",
    )
    deadline = time.monotonic() + 120
    while afd.get_batch_import_jobs(jobId="registrations")["batchImports"][0]["status"] not in (
        "COMPLETE",
        "FAILED",
    ):
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(1)
    afd.create_model(
        modelId="registration_model",
        modelType="ONLINE_FRAUD_INSIGHTS",
        eventTypeName="registration",
    )


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"AFD sample data not found at {SAMPLES}")
def test_train_a_fraud_model_and_move_its_threshold(
    browser: Browser, stack: Stack, screenshots: Path
) -> None:
    _stored_registrations(stack)
    browser.page("fraud")
    browser.find("#fraud-train-registration_model").click()
    status = "#fraud-version-status-registration_model-1_0"
    browser.wait_for(  # the status changes live, from the bus
        lambda: browser.all(status) and browser.text(status) == "TRAINING_COMPLETE",
        "the trained version",
        240,
    )
    browser.page("fraud", "model", "registration_model", "ONLINE_FRAUD_INSIGHTS", "1.0")
    assert 0.5 < float(browser.text("#fraud-auc")) <= 1.0
    before = _rates(browser)
    _set_range(browser, "#fraud-threshold", 950)
    after = browser.wait_for(lambda: (r := _rates(browser)) != before and r, "new rates")
    # A higher threshold flags fewer events: both rates fall (or stay), never rise.
    assert after["tpr"] <= before["tpr"] and after["fpr"] <= before["fpr"]
    cells = [_value(browser, f"#fraud-cm-{c}") for c in ("tp", "fp", "fn", "tn")]
    assert abs(sum(cells) - 100_000) <= 2  # per 100,000 events
    assert browser.all("#fraud-roc circle.marker")
    browser.screenshot(screenshots / "fraud-model.png")


def _value(browser: Browser, css: str) -> float:
    return float(browser.find(css).get_attribute("data-value") or "nan")


def _rates(browser: Browser) -> dict[str, float]:
    return {name: _value(browser, f"#fraud-{name}") for name in ("tpr", "fpr", "precision")}


def _set_range(browser: Browser, css: str, value: float) -> None:
    browser.driver.execute_script(
        "const el = document.querySelector(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input', {bubbles: true}));",
        css,
        value,
    )


def test_run_a_tuning_job_and_watch_it(browser: Browser, screenshots: Path) -> None:
    browser.page("tuning")
    spec = json.loads(browser.find("#tuning-spec").get_attribute("value") or "{}")
    browser.find("#tuning-start").click()
    browser.wait_for(
        lambda: browser.all("#tuning-status") and browser.text("#tuning-status") == "Completed",
        "the job to complete",
        120,
    )
    trials = browser.all("#tuning-trials tbody tr")
    assert len(trials) == spec["stop"]["max_num_trials_started"]
    assert browser.all("#tuning-best-chart svg path")  # the best-so-far line
    browser.screenshot(screenshots / "tuning.png")


def test_a_simulator_job_shows_its_benchmark_not_a_script(browser: Browser) -> None:
    browser.page("tuning")
    spec = {
        "name": f"console-sim-{uuid.uuid4().hex[:6]}",
        "backend": {"type": "simulator", "benchmark": "learning-curves"},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "stop": {"max_num_trials_started": 20},
    }
    browser.driver.execute_script(
        "document.querySelector('#tuning-spec').value = arguments[0];", json.dumps(spec)
    )
    browser.find("#tuning-start").click()
    assert browser.text("#tuning-backend", 20) == "simulator: learning-curves"
    browser.wait_for(
        lambda: browser.all("#tuning-status") and browser.text("#tuning-status") == "Completed",
        "the simulated job to complete",
        60,
    )
    summary = browser.text("section.page[data-page=tuning]")
    assert "Entry point" not in summary and "Simulated workers" in summary
    assert len(browser.all("#tuning-trials tbody tr")) == 20


BUSYBOX_DOCKERFILE = 'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "echo", "built"]\n'
# What a KernelGateway app checks for: SageMaker's default user (UID 1000, GID 100) and the kernel.
IMAGE_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nsagemaker-user:x:1000:100::/home:/bin/sh\n",
    "etc/group": "root:x:0:\nusers:x:100:\n",
    "usr/local/share/jupyter/kernels/python3/kernel.json": json.dumps(
        {
            "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3",
            "language": "python",
        }
    ),
}


def test_build_an_image_and_attach_it_to_a_domain(
    browser: Browser, stack: Stack, tmp_path: Path, screenshots: Path
) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox-static (make test installs it)")
    context = tmp_path / "context"
    (context / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(busybox, context / "rootfs" / "bin" / "busybox")
    (context / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    for path, text in IMAGE_FILES.items():
        (context / "rootfs" / path).parent.mkdir(parents=True, exist_ok=True)
        (context / "rootfs" / path).write_text(text)
    archive = tmp_path / "context.tar"
    archive.write_bytes(pack_context(context, 2**30))
    sagemaker = _aws(stack, "sagemaker")
    role = "arn:aws:iam::000000000000:role/sagemaker"
    sagemaker.create_image(ImageName="team-tools", RoleArn=role)
    sagemaker.create_app_image_config(
        AppImageConfigName="team-config",
        KernelGatewayImageConfig={"KernelSpecs": [{"Name": "python3"}]},
    )
    domain_id = sagemaker.create_domain(
        DomainName="analytics",
        AuthMode="IAM",
        DefaultUserSettings={"ExecutionRole": role},
        SubnetIds=["subnet-1"],
        VpcId="vpc-1",
    )["DomainId"]

    browser.page("images")
    browser.find("#build-context-file").send_keys(str(archive))
    browser.find("#build-repository").send_keys("team-tools:1")
    browser.find("#build-start").click()
    browser.wait_for(  # the log streams live until the build ends
        lambda: browser.all("#build-log-state[data-done=true]"), "the build to end", 120
    )
    assert "built" in browser.text("#build-log")
    assert browser.text("#build-status") == "SUCCEEDED"
    browser.screenshot(screenshots / "build.png")
    Select(browser.find("#version-image")).select_by_value("team-tools")
    browser.find("#version-create").click()
    browser.wait_for(
        lambda: browser.all("#version-1-status") and browser.text("#version-1-status") == "CREATED",
        "the validated version",
        60,
    )

    browser.page("images", "domain", domain_id)
    browser.wait_for(lambda: _has_option(browser, "#attach-image", "team-tools"), "images")
    Select(browser.find("#attach-app")).select_by_value("KernelGateway")
    Select(browser.find("#attach-image")).select_by_value("team-tools")
    Select(browser.find("#attach-config")).select_by_value("team-config")
    browser.find("#attach-submit").click()
    browser.find("#attached-KernelGateway-team-tools", timeout_s=20)
    browser.wait_for(lambda: "team-tools" in browser.text("#launcher"), "the launcher")
    browser.screenshot(screenshots / "domain.png")
    browser.find("#detach-KernelGateway-team-tools").click()
    browser.wait_for(
        lambda: not browser.all("#attached-KernelGateway-team-tools"), "the image detached", 20
    )


def _has_option(browser: Browser, css: str, value: str) -> bool:
    return any(o.get_attribute("value") == value for o in browser.all(f"{css} option"))


def test_models_show_what_the_flows_asked_of_them(browser: Browser, screenshots: Path) -> None:
    """Last: the searches above ran embeddings, so the model page has latency and batch charts."""
    browser.page("models", "all-minilm-l6-v2")
    browser.find("#latency-chart svg")
    browser.find("#batch-chart svg")
    assert "CPUExecutionProvider" in browser.text("#page")
    browser.screenshot(screenshots / "models.png")
    browser.page("overview")
    browser.screenshot(screenshots / "overview.png")
