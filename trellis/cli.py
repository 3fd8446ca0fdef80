"""`trellis`: `up` runs the platform on this machine; the other commands talk to a gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from contracts.subjects import BACKEND_SERVICES
from runtime.embedded_nats import EmbeddedNats
from runtime.settings import SharedSettings
from services.gateway.adapters.bootstrap import (
    CREDENTIALS_FILE,
    gateway_dir,
    load_or_create_credentials,
)
from services.gateway.config import Settings as GatewaySettings
from services.image_builder.adapters.contexts import pack_context
from services.image_builder.adapters.registry_server import is_loopback, registry_argv
from services.image_builder.config import Settings as ImageBuilderSettings
from services.tuner.config import Settings as TunerSettings
from services.tuner.worker import add_arguments as add_worker_arguments
from services.tuner.worker import run as run_worker
from trellis.client import ClientError, GatewayClient
from trellis.supervisor import ProcessSpec, Supervisor


def say(text: str) -> None:
    print(f"[trellis] {text}", flush=True)


# -- up ------------------------------------------------------------------------------------


def process_specs(nats_url: str, ops_base_port: int, data_dir: Path) -> list[ProcessSpec]:
    specs = []
    registry = ImageBuilderSettings().registry
    if is_loopback(registry):  # a registry elsewhere is the operator's; on loopback, ours
        try:
            specs.append(ProcessSpec("registry", registry_argv(data_dir / "registry", registry)))
        except RuntimeError as exc:
            say(f"no image registry: {exc}")
    for i, name in enumerate(BACKEND_SERVICES):
        env = {"TRELLIS_NATS_URL": nats_url}
        if ops_base_port:
            env[f"TRELLIS_{name.upper()}_OPS_PORT"] = str(ops_base_port + i)
        specs.append(ProcessSpec(name, [sys.executable, "-m", f"services.{name}"], env))
    slots = TunerSettings().local_pool_slots or os.cpu_count() or 1
    specs.append(
        ProcessSpec(
            "tuner-worker",
            [
                sys.executable,
                "-m",
                "services.tuner.worker",
                "--pool",
                "local",
                "--slots",
                str(slots),
            ],
            {"TRELLIS_NATS_URL": nats_url},
        )
    )
    specs.append(
        ProcessSpec(
            "gateway", [sys.executable, "-m", "services.gateway"], {"TRELLIS_NATS_URL": nats_url}
        )
    )
    return specs


async def wait_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    return False


async def up(args: argparse.Namespace) -> int:
    shared = SharedSettings()
    data_dir = shared.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    nats: EmbeddedNats | None = None
    if shared.nats_url:
        nats_url = shared.nats_url
        say(f"using NATS at {nats_url}")
    else:
        nats = EmbeddedNats(data_dir / "nats", port=args.nats_port)
        nats_url = nats.start()
        say(f"NATS with JetStream at {nats_url} (data: {data_dir / 'nats'})")
    gateway = GatewaySettings()
    url = f"http://{gateway.host}:{gateway.port}"
    creds = load_or_create_credentials(data_dir)
    supervisor = Supervisor(
        process_specs(nats_url, args.ops_base_port, data_dir), data_dir / "logs", on_event=say
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await supervisor.start()
        say(f"started {', '.join(s.name for s in supervisor.specs)}; logs in {data_dir / 'logs'}")
        waiter = asyncio.create_task(wait_ready(url, args.ready_timeout))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            stopper.cancel()
            if waiter.result():
                say(f"Trellis is ready at {url}  (console: {url}/console/, API docs: {url}/docs)")
            else:
                say(f"not ready after {args.ready_timeout:.0f}s; see {url}/readyz and the logs")
            say(
                "bootstrap credentials (kept 0600 in "
                + str(gateway_dir(data_dir) / CREDENTIALS_FILE)
                + "):"
            )
            say(f"  REST:  Authorization: Bearer {creds.api_key}")
            say(
                f"  AWS:   aws_access_key_id={creds.access_key_id} aws_secret_access_key={creds.secret_access_key}"
            )
            say("press Ctrl-C to stop")
            await stop.wait()
        else:
            waiter.cancel()
        say("stopping...")
        await supervisor.stop(
            order=["gateway", "tuner-worker", *reversed(BACKEND_SERVICES), "registry"]
        )
    finally:
        if nats is not None:
            nats.stop()
    say("stopped")
    return 0


# -- client commands -------------------------------------------------------------------------


def _print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def status(_: argparse.Namespace) -> int:
    client = GatewayClient()
    services: list[dict[str, Any]] = client.call("GET", "/v1/services")["services"]
    _print_table(
        [[s["name"], s["status"], f"{s['ready_replicas']}/{s['replicas']}"] for s in services],
        ["SERVICE", "STATUS", "READY"],
    )
    return 0 if all(s["ready_replicas"] > 0 for s in services) else 1


def keys(args: argparse.Namespace) -> int:
    client = GatewayClient()
    base = "/v1/access-keys" if args.aws else "/v1/keys"
    if args.keys_command == "create":
        created = client.call("POST", base, json={"name": args.name, "scopes": args.scope})
        print(json.dumps(created, indent=2))
        print("Store the secret now: it is not shown again.", file=sys.stderr)
    elif args.keys_command == "list":
        listed = client.call("GET", base)
        rows = listed.get("keys", listed.get("access_keys", []))
        _print_table(
            [
                [
                    k["id"],
                    k["name"],
                    ",".join(k["scopes"]),
                    k["created_at"],
                    k.get("revoked_at") or "",
                ]
                for k in rows
            ],
            ["ID", "NAME", "SCOPES", "CREATED", "REVOKED"],
        )
    else:
        revoked = client.call("DELETE", f"{base}/{args.key_id}")
        print(f"revoked {revoked['id']} ({revoked['name']})")
    return 0


def fraud(args: argparse.Namespace) -> int:
    client = GatewayClient()
    if args.operation == "chart":
        if len(args.params) != 3:
            raise ClientError(
                "usage: trellis fraud chart MODEL_ID VERSION roc|score_distribution|importance"
            )
        model_id, version, name = args.params
        data = client.raw(
            "GET", f"/v1/fraud/models/{model_id}/versions/{version}/charts/{name}.svg"
        )
        out = Path(args.out or f"{model_id}-{version}-{name}.svg")
        out.write_bytes(data)
        print(f"wrote {out}")
        return 0
    body: Any = {}
    if args.json:
        body = json.loads(args.json)
    elif args.file:
        body = json.loads(Path(args.file).read_text())
    print(json.dumps(client.call("POST", f"/v1/fraud/{args.operation}", json=body), indent=2))
    return 0


def _index_id(client: GatewayClient, name_or_id: str) -> str:
    for summary in client.call("GET", "/v1/indexes")["Indexes"]:
        if name_or_id in (summary["Id"], summary["Name"]):
            return str(summary["Id"])
    raise ClientError(f"no index named {name_or_id!r}")


def search(args: argparse.Namespace) -> int:
    """Query an index and print answers, FAQ answers and documents, best first."""
    client = GatewayClient()
    index_id = _index_id(client, args.index)
    body: dict[str, Any] = {"QueryText": args.query, "PageSize": args.size}
    if args.mode:
        body["RankingMode"] = args.mode
    if args.user:
        body["UserContext"] = {"UserId": args.user, "Groups": args.group or []}
    if args.filter:
        body["AttributeFilter"] = json.loads(args.filter)
    result = client.call("POST", f"/v1/indexes/{index_id}/query", json=body)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for item in result["ResultItems"]:
        confidence = item.get("ScoreAttributes", {}).get("ScoreConfidence", "")
        if item["Type"] == "DOCUMENT":
            title = item["DocumentTitle"]["Text"] or item["DocumentId"]
            print(f"{title}  [{confidence}]")
            print(f"  {item.get('DocumentURI', item['DocumentId'])}")
            print(f"  {item['DocumentExcerpt']['Text']}")
        else:
            answer = item["AdditionalAttributes"][-1]["Value"]["TextWithHighlightsValue"]["Text"]
            print(f"{item['Type']}: {answer}  [{confidence}]")
        print()
    print(f"{result['TotalNumberOfResults']} matching documents")
    return 0


def _source_id(client: GatewayClient, index_id: str, name_or_id: str) -> str:
    listed = client.call("GET", f"/v1/data-sources?index_id={index_id}")
    for summary in listed["SummaryItems"]:
        if name_or_id in (summary["Id"], summary["Name"]):
            return str(summary["Id"])
    raise ClientError(f"no data source named {name_or_id!r} in that index")


def crawl(args: argparse.Namespace) -> int:
    """Web crawler data sources: create one, start or stop a sync, show the sync history."""
    client = GatewayClient()
    index_id = _index_id(client, args.index)
    if args.crawl_command == "create":
        web: dict[str, Any] = {
            "Urls": {"SeedUrlConfiguration": {"SeedUrls": args.seed, "WebCrawlerMode": args.scope}},
            "CrawlDepth": args.depth,
            "MaxUrlsPerMinuteCrawlRate": args.rate,
        }
        created = client.call(
            "POST",
            "/v1/data-sources",
            json={
                "Name": args.name,
                "IndexId": index_id,
                "Type": "WEBCRAWLER",
                "Configuration": {"WebCrawlerConfiguration": web},
            },
        )
        print(f"created data source {created['Id']}")
        return 0
    source_id = _source_id(client, index_id, args.source)
    base = f"/v1/data-sources/{source_id}/sync-jobs"
    if args.crawl_command == "sync":
        body: dict[str, Any] = {"IndexId": index_id}
        if args.forced:
            body["SyncMode"] = "FORCED_FULL_CRAWL"
        print(f"started sync {client.call('POST', base, json=body)['ExecutionId']}")
    elif args.crawl_command == "stop":
        client.call("POST", f"{base}/stop", json={"IndexId": index_id})
        print("stopped")
    else:
        rows = [
            [
                job["ExecutionId"],
                job["Status"],
                *(
                    str(job["TrellisMetrics"][k])
                    for k in ("scanned", "added", "modified", "deleted", "failed")
                ),
                job.get("ErrorMessage", ""),
            ]
            for job in client.call("GET", f"{base}?index_id={index_id}")["History"]
        ]
        _print_table(
            rows, ["sync", "status", "scanned", "added", "modified", "deleted", "failed", "error"]
        )
    return 0


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise ClientError(f"{what} {value!r} is not KEY=VALUE")
        pairs[key] = rest
    return pairs


def image(args: argparse.Namespace) -> int:
    """Images: build a directory with buildah and push it (like sm-docker build), list builds."""
    client = GatewayClient()
    if args.image_command == "builds":
        rows = [
            [
                b["id"],
                b["status"],
                b["request"]["repository"],
                b.get("digest") or "",
                b.get("failure_reason") or "",
            ]
            for b in client.call("GET", "/v1/builds")["builds"]
        ]
        _print_table(rows, ["build", "status", "repository", "digest", "reason"])
        return 0
    if args.image_command == "logs":
        for line in client.lines(f"/v1/builds/{args.build}/logs?follow={str(args.follow).lower()}"):
            print(line)
        return 0
    context = Path(args.path)
    archive = pack_context(context, 16 * 1024**3)
    name = f"ctx-{int(time.time())}-{os.getpid()}"
    client.upload(f"/v1/build-contexts/{name}", archive)
    body: dict[str, Any] = {
        "context": name,
        "repository": args.repository,
        "dockerfile": args.file,
        "build_args": _pairs(args.build_arg, "--build-arg"),
        "labels": _pairs(args.label, "--label"),
        "layers": not args.no_cache,
    }
    if args.target:
        body["target"] = args.target
    if args.platform:
        body["platform"] = args.platform
    build = client.call("POST", "/v1/builds", json=body)
    print(f"build {build['id']} queued ({len(archive) / 2**20:.1f} MB context)", file=sys.stderr)
    if args.detach:
        print(build["id"])
        return 0
    for line in client.lines(f"/v1/builds/{build['id']}/logs?follow=true"):
        print(line)
    final = client.call("GET", f"/v1/builds/{build['id']}")
    if final["status"] != "SUCCEEDED":
        print(
            f"trellis: build {final['status']}: {final.get('failure_reason') or ''}",
            file=sys.stderr,
        )
        return 1
    print(f"{final['image_uri']}@{final['digest']}")
    return 0


def tune(args: argparse.Namespace) -> int:
    """Tuning jobs: start one from a JSON or YAML spec, show a job's status and best trial."""
    client = GatewayClient()
    if args.tune_command == "run":
        path = Path(args.spec)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc}") from None
        try:
            spec = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ClientError(
                f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}"
            ) from None
        if not isinstance(spec, dict):
            raise ClientError(f"{path} must hold an object")
        job = client.call("POST", "/v1/tuning-jobs", json=spec)
        print(f"started tuning job {job['name']}")
        if not args.wait:
            return 0
        while job["status"] in ("InProgress", "Stopping"):
            time.sleep(1.0)
            job = client.call("GET", f"/v1/tuning-jobs/{job['name']}")
        _print_job(job)
        return 0 if job["status"] == "Completed" else 1
    if args.tune_command == "export":
        return export_best(client, args)
    _print_job(client.call("GET", f"/v1/tuning-jobs/{args.name}"))
    return 0


def export_best(client: GatewayClient, args: argparse.Namespace) -> int:
    """The best trial's fine-tuned model: ONNX (int8 for CPU), checked, registered for serving."""
    from services.tuner.export import (
        ExportCheckFailed,
        export_classifier,
        registration_config,
        upload_files,
    )

    job = client.call("GET", f"/v1/tuning-jobs/{args.name}")
    best = job.get("best")
    if not best:
        raise ClientError(f"tuning job {args.name} has no trial with results yet")
    # Checkpoints stay on the worker that ran the trial; the local pool's are under the data dir.
    checkpoint = (
        SharedSettings().data_dir.resolve()
        / "tuner"
        / "checkpoints"
        / args.name
        / str(best["trial_id"])
    )
    out_dir = checkpoint.parent / f"{best['trial_id']}-onnx"
    try:
        report = export_classifier(checkpoint, out_dir)
    except (FileNotFoundError, ExportCheckFailed) as exc:
        raise ClientError(f"cannot export trial {best['trial_id']}: {exc}") from None
    print(
        f"exported trial {best['trial_id']} (epoch {report.epoch}, accuracy {report.accuracy:.3f}): "
        f"fp32 max |diff| {report.fp32_max_abs_diff:.2e} vs PyTorch"
        + (
            f", int8 argmax agreement {report.int8_argmax_agreement:.0%}"
            if report.int8_argmax_agreement is not None
            else ""
        )
    )
    config = registration_config(report, name=args.model_name, version=args.version)
    status = client.post_form("/v1/models", {"config": json.dumps(config)}, upload_files(report))
    print(f"registered {status['name']} version {status['version']}: {status.get('state', '')}")
    return 0


def _print_job(job: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(job["trial_counts"].items()))
    print(
        f"{job['name']}: {job['status']} ({job.get('stop_reason') or 'running'}); trials: {counts}"
    )
    if job.get("failure_reason"):
        print(f"  failed: {job['failure_reason']}")
    best = job.get("best")
    if best:
        print(
            f"  best trial {best['trial_id']}: {json.dumps(best['metrics'])} with {json.dumps(best['config'])}"
        )
    for trial in job.get("pareto", {}).get("trials", []):
        print(
            f"  pareto trial {trial['trial_id']} ({trial['pool']}): {json.dumps(trial['metrics'])}"
        )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="trellis", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    p_up = commands.add_parser(
        "up", help="start NATS, every service and the gateway; supervise them"
    )
    p_up.add_argument(
        "--nats-port",
        type=int,
        default=int(os.environ.get("TRELLIS_EMBEDDED_NATS_PORT", 4222)),
        help="port of the embedded NATS (0: any free port); ignored with TRELLIS_NATS_URL",
    )
    p_up.add_argument(
        "--ops-base-port",
        type=int,
        default=0,
        help="serve each service's /metrics and /readyz on consecutive ports from here (0: off)",
    )
    p_up.add_argument("--ready-timeout", type=float, default=90.0)

    commands.add_parser("status", help="every service and its ready replicas")

    p_keys = commands.add_parser("keys", help="manage API keys (--aws: AWS access keys)")
    keys_commands = p_keys.add_subparsers(dest="keys_command", required=True)
    p_create = keys_commands.add_parser("create")
    p_create.add_argument("--name", required=True)
    p_create.add_argument(
        "--scope",
        action="append",
        required=True,
        help="admin, or <area>:read|write (repeat for several)",
    )
    p_create.add_argument(
        "--aws", action="store_true", help="an AWS access-key pair for the SigV4 API"
    )
    p_list = keys_commands.add_parser("list")
    p_list.add_argument("--aws", action="store_true")
    p_revoke = keys_commands.add_parser("revoke")
    p_revoke.add_argument("key_id")
    p_revoke.add_argument("--aws", action="store_true")

    p_fraud = commands.add_parser(
        "fraud",
        help="a Fraud Detector operation (AFD's names and JSON), or `chart MODEL VERSION NAME`",
    )
    p_fraud.add_argument(
        "operation", help="e.g. GetVariables, SendEvent, GetEventPrediction, chart"
    )
    p_fraud.add_argument("params", nargs="*", help="chart: MODEL_ID VERSION NAME")
    p_fraud.add_argument("--json", help="the request body as JSON")
    p_fraud.add_argument("--file", help="a file holding the request body")
    p_fraud.add_argument("--out", help="chart: where to write the SVG")

    p_crawl = commands.add_parser("crawl", help="web crawler data sources and their syncs")
    crawl_commands = p_crawl.add_subparsers(dest="crawl_command", required=True)
    c_create = crawl_commands.add_parser("create", help="a data source crawling seed URLs")
    c_create.add_argument("--index", required=True, help="index name or id")
    c_create.add_argument("--name", required=True)
    c_create.add_argument("--seed", action="append", required=True, help="a seed URL (repeat)")
    c_create.add_argument("--depth", type=int, default=2)
    c_create.add_argument("--rate", type=int, default=300, help="URLs per host per minute")
    c_create.add_argument(
        "--scope", choices=["HOST_ONLY", "SUBDOMAINS", "EVERYTHING"], default="HOST_ONLY"
    )
    for name, text in (
        ("sync", "start a sync"),
        ("status", "sync history"),
        ("stop", "stop the sync"),
    ):
        command = crawl_commands.add_parser(name, help=text)
        command.add_argument("--index", required=True, help="index name or id")
        command.add_argument("--source", required=True, help="data source name or id")
        if name == "sync":
            command.add_argument("--forced", action="store_true", help="refetch every page")

    p_image = commands.add_parser("image", help="build images with buildah and push them")
    image_commands = p_image.add_subparsers(dest="image_command", required=True)
    i_build = image_commands.add_parser("build", help="build a directory and push it")
    i_build.add_argument("path", help="the build context (a directory with a Dockerfile)")
    i_build.add_argument("--repository", required=True, help="NAME[:TAG] in the registry")
    i_build.add_argument("-f", "--file", default="Dockerfile", help="Dockerfile, in the context")
    i_build.add_argument("--build-arg", action="append", help="KEY=VALUE (repeat)")
    i_build.add_argument("--label", action="append", help="KEY=VALUE (repeat)")
    i_build.add_argument("--target", help="the stage to build")
    i_build.add_argument("--platform", help="e.g. linux/arm64")
    i_build.add_argument("--no-cache", action="store_true", help="do not reuse cached layers")
    i_build.add_argument("--detach", action="store_true", help="print the build id and return")
    image_commands.add_parser("builds", help="recent builds")
    i_logs = image_commands.add_parser("logs", help="a build's log")
    i_logs.add_argument("build")
    i_logs.add_argument("--follow", action="store_true")

    p_tune = commands.add_parser("tune", help="hyperparameter tuning jobs")
    tune_commands = p_tune.add_subparsers(dest="tune_command", required=True)
    t_run = tune_commands.add_parser("run", help="start a job from a spec (JSON or YAML)")
    t_run.add_argument("spec")
    t_run.add_argument("--wait", action="store_true", help="wait for the job to end")
    t_status = tune_commands.add_parser("status", help="a job's status, best trial, Pareto set")
    t_status.add_argument("name")
    t_export = tune_commands.add_parser(
        "export", help="export the best trial's model to ONNX and register it for serving"
    )
    t_export.add_argument("name")
    t_export.add_argument("--model-name", default="rotten-tomatoes-minilm")
    t_export.add_argument("--version", type=int, default=1)
    add_worker_arguments(
        commands.add_parser("tuner-worker", help="join a worker pool and run its trials")
    )

    p_search = commands.add_parser("search", help="query a search index")
    p_search.add_argument("query")
    p_search.add_argument("--index", required=True, help="index name or id")
    p_search.add_argument("--size", type=int, default=10, help="results per page (1-100)")
    p_search.add_argument(
        "--mode", choices=["HYBRID_RRF", "HYBRID_NORMALIZED", "KEYWORD", "SEMANTIC"]
    )
    p_search.add_argument("--user", help="search as this user (ACLs apply)")
    p_search.add_argument("--group", action="append", help="the user's groups (repeat)")
    p_search.add_argument("--filter", help="a Kendra AttributeFilter as JSON")
    p_search.add_argument("--json", action="store_true", help="print Kendra's JSON response")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "up":
            return asyncio.run(up(args))
        if args.command == "status":
            return status(args)
        if args.command == "fraud":
            return fraud(args)
        if args.command == "search":
            return search(args)
        if args.command == "crawl":
            return crawl(args)
        if args.command == "image":
            return image(args)
        if args.command == "tune":
            return tune(args)
        if args.command == "tuner-worker":
            return run_worker(args)
        return keys(args)
    except ClientError as exc:
        print(f"trellis: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
