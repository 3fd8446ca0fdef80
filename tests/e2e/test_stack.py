"""The whole platform as `make run` starts it: every service a process, supervised, behind the gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import httpx
import pytest

from contracts.subjects import BACKEND_SERVICES
from tests.e2e.stack import Stack, running_stack

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "var") as running:
        yield running


def test_make_run_stack_end_to_end(stack: Stack) -> None:
    http = httpx.Client(base_url=stack.url, timeout=10)
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert {name: s["ready"] for name, s in ready.json()["services"].items()} == {
        n: 1 for n in BACKEND_SERVICES
    }

    creds = stack.credentials
    assert (stack.data_dir / "gateway" / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert creds["api_key"] in "\n".join(stack.lines)  # printed once for the person who ran it
    admin = {"Authorization": f"Bearer {creds['api_key']}"}
    assert http.get("/v1/services").status_code == 401
    limited = http.post(
        "/v1/keys", headers=admin, json={"name": "ro", "scopes": ["fraud:read"]}
    ).json()["api_key"]
    assert (
        http.get("/v1/services", headers={"Authorization": f"Bearer {limited}"}).status_code == 403
    )

    aws = {
        "endpoint_url": stack.url,
        "region_name": "eu-west-1",
        "aws_access_key_id": creds["access_key_id"],
        "aws_secret_access_key": creds["secret_access_key"],
    }
    assert (
        boto3.client("frauddetector", **aws).get_kms_encryption_key()["kmsKey"][
            "kmsEncryptionKeyArn"
        ]
        == "DEFAULT"
    )
    assert boto3.client("kendra", **aws).list_indices()["IndexConfigurationSummaryItems"] == []
    with pytest.raises(botocore.exceptions.ClientError) as bad:
        boto3.client("kendra", **{**aws, "aws_secret_access_key": "wrong"}).list_indices()
    assert bad.value.response["Error"]["Code"] == "InvalidSignatureException"

    # Images: the embedded registry is up, and SageMaker's API answers.
    assert boto3.client("sagemaker", **aws).list_images()["Images"] == []
    # Tuning: `make run` started the `local` worker pool, so a job runs with no set-up.
    script = stack.data_dir.parent / "train.py"
    script.write_text(
        "from trellis.reporter import Reporter, parse_config\n"
        "x = float(parse_config()['x'])\n"
        "for epoch in (1, 2):\n"
        "    Reporter()(epoch=epoch, loss=(x - 0.3) ** 2 / epoch)\n"
    )
    job = {
        "name": "smoke",
        "entry_point": str(script),
        "config_space": {"x": {"type": "uniform", "lower": 0, "upper": 1}},
        "metrics": [{"name": "loss", "mode": "min"}],
        "stop": {"max_num_trials_started": 3},
        "n_workers": 2,
    }
    assert http.post("/v1/tuning-jobs", headers=admin, json=job).status_code == 201
    stack.wait_for(
        lambda: http.get("/v1/tuning-jobs/smoke", headers=admin).json()["status"] == "Completed",
        60,
        "the tuning job on the local pool",
    )
    assert http.get("/v1/tuning-jobs/smoke", headers=admin).json()["trial_counts"] == {
        "completed": 3
    }

    # The CLI's client commands, finding the key under the data dir as a user's shell would.
    cli_env = {
        **os.environ,
        "TRELLIS_DATA_DIR": str(stack.data_dir),
        "TRELLIS_GATEWAY_URL": stack.url,
    }
    cli_env.pop("TRELLIS_API_KEY", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trellis.cli", *args],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    status = cli("status")
    assert status.returncode == 0 and all(name in status.stdout for name in BACKEND_SERVICES)
    created = cli("keys", "create", "--name", "from-cli", "--scope", "indexer:read")
    key = json.loads(created.stdout)
    assert key["scopes"] == ["indexer:read"] and key["api_key"].startswith("trk_")
    assert key["id"] in cli("keys", "list").stdout
    assert cli("keys", "revoke", key["id"]).returncode == 0
    assert json.loads(cli("fraud", "GetVariables").stdout) == {"variables": []}
    denied = cli("keys", "create", "--name", "x", "--scope", "nonsense")
    assert denied.returncode == 2 and "400" in denied.stderr

    # The default embedding model is built on first start and served through the gateway.
    def minilm_ready() -> bool:
        model = http.get("/v1/models/all-minilm-l6-v2", headers=admin)
        return model.status_code == 200 and model.json()["state"] == "READY"

    stack.wait_for(minilm_ready, 120, "the default embedding model")
    embedded = http.post(
        "/v1/models/all-minilm-l6-v2/infer", headers=admin, json={"texts": ["hello", "world"]}
    )
    assert embedded.status_code == 200 and len(embedded.json()["embeddings"][0]) == 384

    # kill -9 a service: the supervisor logs it and restarts it; readiness comes back.
    services = http.get("/v1/services", headers=admin).json()["services"]
    [fraud] = [s for s in services if s["name"] == "fraud"]
    old_pid = fraud["instances"][0]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    stack.wait_for(
        lambda: stack.said("fraud exited unexpectedly (code -9)"), 20, "the crash to be noticed"
    )
    stack.wait_for(lambda: stack.said("fraud restarted"), 20, "the restart")

    def fraud_back() -> bool:
        reply = http.post("/v1/services/fraud/ping", headers=admin)
        return reply.status_code == 200

    stack.wait_for(fraud_back, 30, "fraud to answer again")
    pids = [
        i["pid"]
        for s in http.get("/v1/services", headers=admin).json()["services"]
        if s["name"] == "fraud"
        for i in s["instances"]
    ]
    assert (
        old_pid not in pids or len(pids) > 1
    )  # the dead replica may linger until its registry key expires

    # Ctrl-C stops everything cleanly.
    children = [i["pid"] for s in services for i in s["instances"]]
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
    assert stack.said("stopped")
    for pid in children:
        if pid == old_pid:
            continue
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
