"""Deployment files: compose services, settings names, Dockerfile layering, NATS cluster, probe."""

from __future__ import annotations

import importlib
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from contracts.subjects import BACKEND_SERVICES
from runtime.probe import main as probe_main
from runtime.settings import SharedSettings
from services.gateway.config import BootstrapSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
CLUSTER = ROOT / "deploy" / "nats" / "docker-compose.cluster.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
NATS_DIR = ROOT / "deploy" / "nats"

APP_SERVICES = {*BACKEND_SERVICES, "gateway"}
INFRA_SERVICES = {"nats", "registry"}
NATS_NODES = ("nats-1", "nats-2", "nats-3")
PACKAGES = ("contracts", "documents", "runtime", "services", "trellis")


# --- YAML loading (Compose merge tags `!override` / `!reset`) ----------------------------------


class Override(dict[Any, Any]):
    """A mapping tagged `!override` in a Compose file: it replaces the base instead of merging."""


class _ComposeLoader(yaml.SafeLoader):
    pass


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!override", _construct_override)
_ComposeLoader.add_constructor("!reset", _construct_override)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 (SafeLoader subclass)
    assert isinstance(data, dict), path
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return _load(CLUSTER)


def _services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = doc.get("services")
    assert isinstance(services, dict)
    return services


def _app_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _services(doc).items() if name in APP_SERVICES}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    assert isinstance(env, dict)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form: condition service_started
        return {name: {"condition": "service_started"} for name in deps}
    assert isinstance(deps, dict)
    return deps


def _healthy_deps(service: dict[str, Any]) -> set[str]:
    return {
        name
        for name, spec in _depends_on(service).items()
        if isinstance(spec, dict) and spec.get("condition") == "service_healthy"
    }


def _health_test(service: dict[str, Any]) -> list[str] | str | None:
    check = service.get("healthcheck")
    if not isinstance(check, dict) or check.get("disable"):
        return None
    test = check.get("test")
    return test if test else None


# --- Settings names ---------------------------------------------------------------------------


def _env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{field}".upper() for field in settings.model_fields}


def _settings_class(service: str) -> type[BaseSettings]:
    settings = importlib.import_module(f"services.{service}.config").Settings
    assert issubclass(settings, BaseSettings)
    return settings  # type: ignore[no-any-return]


def _allowed_env(service: str) -> set[str]:
    allowed = _env_names(SharedSettings) | _env_names(_settings_class(service))
    if service == "gateway":
        allowed |= _env_names(BootstrapSettings)
    return allowed


def _assert_env_names_known(doc: dict[str, Any]) -> None:
    for name, svc in _app_services(doc).items():
        used = {key for key in _environment(svc) if key.upper().startswith("TRELLIS_")}
        unknown = {key for key in used if key.upper() not in _allowed_env(name)}
        assert not unknown, f"{name}: not a settings field: {sorted(unknown)}"


def test_env_names_derive_from_settings() -> None:
    assert "TRELLIS_NATS_URL" in _env_names(SharedSettings)
    assert "TRELLIS_FRAUD_OPS_PORT" in _env_names(_settings_class("fraud"))
    assert "TRELLIS_ADMIN_API_KEY" in _env_names(BootstrapSettings)


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_services(compose: dict[str, Any]) -> None:
    services = _services(compose)
    built = {name for name, svc in services.items() if "build" in svc}
    assert built == APP_SERVICES
    assert set(services) == APP_SERVICES | INFRA_SERVICES


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_build_arg_names_a_runnable_package(compose: dict[str, Any], service: str) -> None:
    build = _services(compose)[service]["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    arg = build["args"]["SERVICE"]
    assert arg == service
    assert (ROOT / "services" / arg / "__main__.py").is_file(), f"services/{arg}/__main__.py"


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, svc in _services(compose).items():
        assert _health_test(svc), f"{name} has no healthcheck test"


def test_app_services_probe_themselves(compose: dict[str, Any]) -> None:
    for name, svc in _app_services(compose).items():
        test = _health_test(svc)
        assert isinstance(test, list) and test[0] == "CMD", name
        assert test[1:4] == ["python", "-m", "runtime.probe"], name
        url = (
            "http://127.0.0.1:8080/healthz" if name == "gateway" else "http://127.0.0.1:9000/readyz"
        )
        assert test[-1] == url, name


def test_app_services_wait_for_healthy_nats(compose: dict[str, Any]) -> None:
    for name, svc in _app_services(compose).items():
        assert "nats" in _healthy_deps(svc), name
        assert svc.get("restart") == "unless-stopped", name


def test_gateway_waits_for_every_backend(compose: dict[str, Any]) -> None:
    gateway = _services(compose)["gateway"]
    assert set(BACKEND_SERVICES) <= _healthy_deps(gateway)
    assert "127.0.0.1:8080:8080" in gateway.get("ports", [])


def test_image_builder_waits_for_registry(compose: dict[str, Any]) -> None:
    assert "registry" in _healthy_deps(_services(compose)["image_builder"])


def test_compose_env_names_are_settings_fields(compose: dict[str, Any]) -> None:
    _assert_env_names_known(compose)


def test_compose_env_values(compose: dict[str, Any]) -> None:
    for name, svc in _app_services(compose).items():
        env = _environment(svc)
        upper = name.upper()
        assert env["TRELLIS_NATS_URL"] == "nats://nats:4222", name
        assert env["TRELLIS_DATA_DIR"] == "/data", name
        if name == "gateway":  # probed on its own HTTP port
            continue
        assert env[f"TRELLIS_{upper}_OPS_HOST"] == "0.0.0.0", name
        assert env[f"TRELLIS_{upper}_OPS_PORT"] == "9000", name
    gateway = _environment(_services(compose)["gateway"])
    assert gateway["TRELLIS_GATEWAY_HOST"] == "0.0.0.0"
    assert gateway["TRELLIS_GATEWAY_PORT"] == "8080"
    for key in (
        "TRELLIS_ADMIN_API_KEY",
        "TRELLIS_ADMIN_ACCESS_KEY_ID",
        "TRELLIS_ADMIN_SECRET_ACCESS_KEY",
    ):
        assert gateway[key] == f"${{{key}:-}}", key


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in _services(compose).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


# --- deploy/nats/docker-compose.cluster.yml ---------------------------------------------------


def test_cluster_replaces_single_nats(cluster: dict[str, Any]) -> None:
    services = _services(cluster)
    assert services["nats"].get("profiles"), "the single node must be disabled by a profile"
    for node in NATS_NODES:
        svc = services[node]
        assert svc["image"].startswith("nats:"), node
        assert _health_test(svc), node
        mounted = [v.split(":")[0] for v in svc["volumes"]]
        assert f"./deploy/nats/{node}.conf" in mounted, node
        assert (ROOT / f"deploy/nats/{node}.conf").is_file()
    declared = set(cluster.get("volumes") or {})
    for node in NATS_NODES:
        for volume in services[node]["volumes"]:
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared


def test_cluster_app_services(cluster: dict[str, Any]) -> None:
    apps = _app_services(cluster)
    assert set(apps) == APP_SERVICES
    for name, svc in apps.items():
        env = _environment(svc)
        urls = env["TRELLIS_NATS_URL"].split(",")
        assert urls == [f"nats://{node}:4222" for node in NATS_NODES], name
        assert env["TRELLIS_STREAM_REPLICAS"] == "3", name
        deps = svc["depends_on"]
        assert isinstance(deps, Override), f"{name}: depends_on must be !override (drop `nats`)"
        assert "nats" not in deps, name
        assert set(NATS_NODES) <= _healthy_deps(svc), name
    assert set(BACKEND_SERVICES) <= _healthy_deps(apps["gateway"])
    assert "registry" in _healthy_deps(apps["image_builder"])


def test_cluster_env_names_are_settings_fields(cluster: dict[str, Any]) -> None:
    _assert_env_names_known(cluster)


def _conf(node: str) -> str:
    text = (NATS_DIR / f"{node}.conf").read_text()
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _block(text: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s*[:=]?\s*\{{(.*?)^\s*\}}", text, re.MULTILINE | re.DOTALL)
    assert match, f"no {name} {{}} block"
    return match.group(1)


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_node_config(node: str) -> None:
    text = _conf(node)
    assert re.search(rf"^\s*server_name\s*[:=]\s*\"?{node}\"?\s*$", text, re.MULTILINE)
    assert re.search(r"^\s*max_payload\s*[:=]", text, re.MULTILINE)
    assert re.search(r"^\s*http\s*[:=].*8222", text, re.MULTILINE)
    jetstream = _block(text, "jetstream")
    assert re.search(r"store_dir\s*[:=]\s*\"?/data\"?", jetstream)
    cluster = _block(text, "cluster")
    assert re.search(r"^\s*name\s*[:=]\s*\"?trellis\"?\s*$", cluster, re.MULTILINE)
    routes = set(re.findall(r"nats-route://([\w.-]+):6222", cluster))
    assert routes == set(NATS_NODES) - {node}


# --- Dockerfile -------------------------------------------------------------------------------


def _instructions(path: Path) -> list[str]:
    """Logical Dockerfile instructions: comments dropped, `\\` continuations joined."""
    out: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def _copy_sources(instruction: str) -> set[str]:
    """Source paths of a `COPY` instruction (flags and destination dropped), else empty."""
    words = instruction.split()
    if not words or words[0] != "COPY":
        return set()
    args = [w for w in words[1:] if not w.startswith("--")]
    return {src.removeprefix("./").rstrip("/") for src in args[:-1]}


def _index(instructions: list[str], predicate: Any, what: str) -> int:
    for i, line in enumerate(instructions):
        if predicate(line):
            return i
    raise AssertionError(f"Dockerfile: no {what}")


def test_dockerfile_layers() -> None:
    lines = _instructions(DOCKERFILE)
    assert lines[0].split()[:2] == ["FROM", "python:3.11-slim"]
    copy_pyproject = _index(
        lines, lambda s: s.startswith("COPY") and "pyproject.toml" in s, "COPY pyproject.toml"
    )
    copy_code = _index(lines, lambda s: bool(_copy_sources(s) & set(PACKAGES)), "COPY of a package")
    install_deps = _index(
        lines, lambda s: s.startswith("RUN") and "pip install" in s, "pip install"
    )
    assert copy_pyproject < install_deps < copy_code
    assert _copy_sources(lines[copy_pyproject]) == {"pyproject.toml"}
    copied = set().union(*(_copy_sources(s) for s in lines[copy_code:]))
    assert set(PACKAGES) <= copied
    assert not any("COPY . " in s or s.startswith("ADD") for s in lines), "copy named paths only"


def test_dockerfile_runtime() -> None:
    lines = _instructions(DOCKERFILE)
    text = "\n".join(lines)
    assert re.search(r"^ARG SERVICE\b", text, re.MULTILINE)
    assert re.search(r"^ENV .*\bTRELLIS_DATA_DIR=/data\b", text, re.MULTILINE)
    assert re.search(r"^ENV .*\bSERVICE=\$\{?SERVICE\}?", text, re.MULTILINE)
    users = [s.split()[1] for s in lines if s.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "must run as a non-root user"
    health = [s for s in lines if s.startswith("HEALTHCHECK")]
    assert len(health) == 1 and "runtime.probe" in health[0]
    cmd = [s for s in lines if s.startswith("CMD")]
    assert len(cmd) == 1 and "python -m" in cmd[0] and "services.${SERVICE}" in cmd[0]
    assert not cmd[0].startswith("CMD ["), "shell form, so ${SERVICE} expands at run time"


def test_dockerignore() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".git", "tests", "bench", "docs"} <= ignored
    assert {"**/__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"} <= ignored
    assert not ignored & set(PACKAGES) and "pyproject.toml" not in ignored


# --- runtime.probe ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/ok": 200, "/unready": 503, "/moved": 302}.get(self.path, 404)
        body = b"{}"
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_probe_ok(http_base: str) -> None:
    assert probe_main([f"{http_base}/ok", "--timeout", "5"]) == 0


def test_probe_not_ready(http_base: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_main([f"{http_base}/unready", "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert "503" in err and len(err.strip().splitlines()) == 1


def test_probe_does_not_follow_redirects(http_base: str) -> None:
    assert probe_main([f"{http_base}/moved", "--timeout", "5"]) == 1


def test_probe_closed_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_main([f"http://127.0.0.1:{_closed_port()}/readyz", "--timeout", "2"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_probe_bad_usage() -> None:
    assert probe_main([]) == 1
    assert probe_main(["ftp://127.0.0.1/x"]) == 1
    assert probe_main(["http://127.0.0.1:1/", "--timeout", "0"]) == 1
