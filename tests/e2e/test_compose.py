"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

The file must parse; every container built from this repository must run a command the
`serviceorders` CLI really has (parsed by click itself, options and all) and be configured
only with variables `Settings.from_env` reads, pointing at the compose file's own PostgreSQL
and at the Kafka listener meant for containers; the image must contain every package folder
pyproject maps.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from serviceorders.api.auth import load_keys
from serviceorders.cli import main
from serviceorders.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

CONSUMERS = ("consumer-1", "consumer-2")
ENGINE = ("init", "api", *CONSUMERS, "projector")
EXPECTED_COMMAND = {
    "init": ["db", "init"],
    "api": ["api"],
    "consumer-1": ["consume"],
    "consumer-2": ["consume"],
    "projector": ["project"],
}


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE.is_file(), f"{COMPOSE} is missing"
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        "docker-compose.yml has no services mapping"
    )
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def built_here(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    if isinstance(build, dict):
        build = build.get("context")
    return build is not None and str(build).rstrip("/") in (".", "./")


def engine_services(services: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if built_here(s)}


INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
)


def interpolate(value: Any) -> str:
    """Compose's `${NAME:-default}` with the defaults (the file must work with no .env)."""
    text = str(value)

    def default(m: re.Match[str]) -> str:
        assert m.group("op"), f"${{{m.group('name')}}} has no default: {text}"
        return m.group("default")

    return INTERPOLATION.sub(default, text).replace("$$", "$")


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate("" if v is None else v) for k, v in env.items()}


def command_args(command: Any) -> list[str]:
    assert isinstance(command, list), f"use the exec (list) form for commands, not {command!r}"
    return [interpolate(a) for a in command]


def resolve_cli(args: list[str]) -> list[str]:
    """Parse `serviceorders ARGS` with click, without running it: the command path, or a
    failure naming what click refused (unknown command or option, bad value, ...)."""
    try:
        ctx = main.make_context("serviceorders", list(args))
        command: click.Command = main
        path: list[str] = []
        while isinstance(command, click.Group):
            # click >= 8.2 keeps the subcommand in _protected_args (protected_args deprecated)
            protected = (
                ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
            )
            rest = [*protected, *ctx.args]
            assert rest, f"`serviceorders {' '.join(args)}` names no command"
            name, sub, rest = command.resolve_command(ctx, rest)
            assert sub is not None and name is not None
            path.append(name)
            command = sub
            ctx = command.make_context(name, rest, parent=ctx)
    except click.UsageError as e:
        pytest.fail(
            f"`serviceorders {' '.join(args)}` is not a valid command: {e.format_message()}"
        )
    return path


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_variables() -> set[str]:
    recorder = RecordingEnv()
    Settings.from_env(recorder)
    return recorder.asked


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [
        line
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def copied_sources() -> set[str]:
    sources: set[str] = set()
    for keyword, rest in dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        if rest.startswith("--from"):
            continue
        sources.update(w.removeprefix("./").rstrip("/") for w in words[:-1])
    return sources


# ------------------------------------------------------------------------------- tests
def test_compose_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    missing = {"kafka", "postgres", *ENGINE} - set(services)
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"
    assert str(services["kafka"].get("image", "")).startswith("apache/kafka"), (
        "kafka must run the official apache/kafka image"
    )
    assert str(services["postgres"].get("image", "")).startswith("postgres"), (
        "postgres must run the official postgres image"
    )
    engine = engine_services(services)
    not_built = set(ENGINE) - set(engine)
    assert not not_built, f"{sorted(not_built)} are not built from this repository (build: .)"
    consumers = [n for n, s in engine.items() if s.get("command", [None])[0] == "consume"]
    assert sorted(consumers) == sorted(CONSUMERS), f"two consumers expected, found {consumers}"


def test_engine_commands_are_real_cli_commands(services: dict[str, dict[str, Any]]) -> None:
    for name, service in engine_services(services).items():
        assert "command" in service, f"{name} has no command (the image's default would run)"
        path = resolve_cli(command_args(service["command"]))
        if name in EXPECTED_COMMAND:
            assert path == EXPECTED_COMMAND[name], f"{name} runs {path}"


def test_the_cli_check_refuses_what_click_refuses() -> None:
    assert resolve_cli(["consume", "--idle-exit", "5"]) == ["consume"]
    assert resolve_cli(["dlq", "list", "--pending"]) == ["dlq", "list"]
    for bad in (
        ["consumer"],
        ["consume", "--no-such-option"],
        ["api", "--port", "http"],
        ["db"],
        ["db", "migrate"],
        ["project", "extra"],
    ):
        with pytest.raises(pytest.fail.Exception):
            resolve_cli(bad)


def test_engine_environment_is_what_settings_read(services: dict[str, dict[str, Any]]) -> None:
    known = settings_variables()
    # The recorder sees the variables of the settings table, the Kafka pass-through included.
    assert {
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "SERVICEORDERS_TOPIC_PARTITIONS",
        "KAFKA_SECURITY_PROTOCOL",
        "SERVICEORDERS_API_KEYS",
    } <= known
    for name, service in engine_services(services).items():
        env = environment(service)
        unknown = sorted(set(env) - known)
        assert not unknown, f"{name} sets variables the engine never reads: {unknown}"
        Settings.from_env(env)  # every value is valid (raises SettingsError / ValidationError)


def test_engine_uses_the_compose_postgres(services: dict[str, dict[str, Any]]) -> None:
    pg = environment(services["postgres"])
    user = pg.get("POSTGRES_USER", "postgres")
    dbname = pg.get("POSTGRES_DB", user)
    for name, service in engine_services(services).items():
        env = environment(service)
        assert "DATABASE_URL" in env, f"{name} has no DATABASE_URL (it would use SQLite)"
        db = Settings.from_env(env).database
        assert (db.kind, db.host, db.port) == ("postgres", "postgres", 5432), (
            f"{name}: DATABASE_URL does not point at the postgres service: {db.url()}"
        )
        assert (db.dbname, db.user, db.password) == (dbname, user, pg["POSTGRES_PASSWORD"]), (
            f"{name}: DATABASE_URL does not match the postgres service's database / user"
        )


def kafka_listeners(services: dict[str, dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """The kafka service's advertised listeners: name -> (host, port)."""
    env = environment(services["kafka"])
    listeners = {}
    for entry in env["KAFKA_ADVERTISED_LISTENERS"].split(","):
        listener, _, address = entry.strip().partition("://")
        host, _, port = address.rpartition(":")
        listeners[listener] = (host, int(port))
    return listeners


def test_kafka_is_a_single_kraft_node_without_auto_creation(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any(k.startswith("KAFKA_ZOOKEEPER") for k in env), "KRaft, no ZooKeeper"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 1
    assert kafka.get("healthcheck", {}).get("test"), "kafka needs a healthcheck"
    bound = {
        entry.partition("://")[0]: int(entry.rpartition(":")[2])
        for entry in env["KAFKA_LISTENERS"].split(",")
    }
    published = {str(p).rsplit(":", 1)[-1] for p in kafka.get("ports", [])}
    for listener, (host, port) in kafka_listeners(services).items():
        assert bound.get(listener) == port, f"{listener} is advertised on {port}, not bound"
        if host in ("127.0.0.1", "localhost"):  # the host's listener is published
            assert str(port) in published, f"{listener} ({host}:{port}) is not published"


def test_engine_reaches_kafka_on_the_internal_listener(services: dict[str, dict[str, Any]]) -> None:
    internal = {
        f"{host}:{port}" for host, port in kafka_listeners(services).values() if host == "kafka"
    }
    assert internal, "kafka advertises no listener under its service name"
    for name in (*CONSUMERS, "projector"):
        settings = Settings.from_env(environment(services[name]))
        assert settings.kafka_bootstrap_servers, f"{name} has no KAFKA_BOOTSTRAP_SERVERS"
        servers = set(settings.kafka_bootstrap_servers.split(","))
        assert servers <= internal, f"{name}: {servers} is not kafka's internal listener"
        assert settings.topic_replication == 1, "one broker holds one replica"
        assert settings.topic_partitions >= len(CONSUMERS), (
            "fewer partitions than consumers: a consumer would idle"
        )
    # The consumers are one group on one topic set; the projector publishes to the same
    # events topic.
    shape = {
        name: (s.consumer_group, s.inbound_topic, s.dead_letter_topic, s.events_topic)
        for name in (*CONSUMERS, "projector")
        for s in [Settings.from_env(environment(services[name]))]
    }
    assert len(set(shape.values())) == 1, f"the engine's containers disagree: {shape}"


def test_api_listens_beyond_loopback_only_with_keys(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    args = command_args(api["command"])
    assert args[args.index("--host") + 1] == "0.0.0.0", "the api must be reachable"
    settings = Settings.from_env(environment(api))
    assert load_keys(settings.api_keys, settings.api_keys_file), (
        "the api listens on 0.0.0.0: it needs SERVICEORDERS_API_KEYS (it refuses to start)"
    )


def test_start_order_follows_health(services: dict[str, dict[str, Any]]) -> None:
    def needs(name: str) -> dict[str, str]:
        deps = services[name].get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        return {dep: spec.get("condition", "") for dep, spec in deps.items()}

    assert needs("init").get("postgres") == "service_healthy"
    assert services["init"].get("restart", "no") == "no", "init runs once"
    for name in ("api", *CONSUMERS, "projector"):
        assert needs(name).get("init") == "service_completed_successfully", (
            f"{name} must wait for `db init`"
        )
    for name in (*CONSUMERS, "projector"):
        assert needs(name).get("kafka") == "service_healthy", f"{name} must wait for kafka"
    for name, service in services.items():
        for dep, condition in (service.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits on {dep}'s healthcheck"


def test_dockerfile_builds_the_package(services: dict[str, dict[str, Any]]) -> None:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms), froms
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["serviceorders"]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "run as a non-root user"
    cmds = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert cmds, "no default CMD"
    resolve_cli(json.loads(cmds[-1]))

    package_dir = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-dir"
    ]
    needed = {*package_dir.values(), "pyproject.toml", "README.md"}
    missing = needed - copied_sources()
    assert not missing, f"the Dockerfile does not copy {sorted(missing)}"

    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "!"))
    ]
    for source in needed:
        hits = [p for p in ignored if fnmatch.fnmatch(source, p.strip("/"))]
        assert not hits, f".dockerignore drops {source} (patterns {hits})"


# ---------------------------------------------------------------- metrics (docs/operations.md)
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
SERVERS = (*CONSUMERS, "projector")  # consume and project: /health and /metrics on a port


def scrape_targets() -> set[str]:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    return {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }


def test_prometheus_scrapes_every_engine_process(services: dict[str, dict[str, Any]]) -> None:
    targets = scrape_targets()
    expected = set()
    for name in SERVERS:
        settings = Settings.from_env(environment(services[name]))
        assert settings.metrics_port, f"{name} serves no metrics (SERVICEORDERS_METRICS_PORT)"
        assert settings.metrics_host == "0.0.0.0", (
            f"{name}'s metrics listen on {settings.metrics_host}: Prometheus cannot reach them"
        )
        expected.add(f"{name}:{settings.metrics_port}")
    args = command_args(services["api"]["command"])
    expected.add(f"api:{args[args.index('--port') + 1]}")  # /metrics on the API's own port
    assert targets == expected, f"Prometheus scrapes {sorted(targets)}, not {sorted(expected)}"
    mounts = [str(v) for v in services["prometheus"].get("volumes", [])]
    assert any(m.startswith("./deploy/prometheus.yml:") for m in mounts), mounts


def test_consume_and_project_are_checked_on_their_health_endpoint(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in SERVERS:
        port = Settings.from_env(environment(services[name])).metrics_port
        test = " ".join(services[name].get("healthcheck", {}).get("test", []))
        assert f"http://127.0.0.1:{port}/health" in test, f"{name}'s healthcheck: {test!r}"


def test_grafana_is_provisioned_with_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(
        str(v).rsplit(":", 1)[0].split(":", 1) for v in services["grafana"].get("volumes", [])
    )
    provisioning = mounts.get("./deploy/grafana/provisioning")
    assert provisioning == "/etc/grafana/provisioning", mounts
    dashboards_dir = mounts.get("./deploy/grafana/dashboards")
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "serviceorders.yml").read_text()
    )
    assert [p["options"]["path"] for p in providers["providers"]] == [dashboards_dir]
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http://prometheus:")
    assert "prometheus" in services
    dashboard = json.loads((GRAFANA / "dashboards" / "serviceorders.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}, "the panels name another data source"
