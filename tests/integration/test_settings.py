"""Settings: DATABASE_URL parsing, the eventsourcing configuration, and os.environ ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import id_created
from serviceorders.bootstrap import build_application, eventsourcing_env, init_database
from serviceorders.domain import commands as cmd
from serviceorders.settings import DatabaseConfig, Settings, SettingsError, redact

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ PostgreSQL URLs
@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgres_schemes(scheme):
    db = DatabaseConfig.from_url(f"{scheme}://so_user:s3cret@db.example.com:6543/orders")
    assert db == DatabaseConfig(
        kind="postgres",
        dbname="orders",
        host="db.example.com",
        port=6543,
        user="so_user",
        password="s3cret",
    )


def test_postgres_without_password_and_default_port():
    db = DatabaseConfig.from_url("postgresql://so_user@db.example.com/orders")
    assert (db.kind, db.host, db.port, db.user, db.password, db.dbname) == (
        "postgres",
        "db.example.com",
        5432,
        "so_user",
        "",
        "orders",
    )


def test_postgres_defaults_for_user_and_host():
    db = DatabaseConfig.from_url("postgresql:///orders")
    assert (db.host, db.port, db.user, db.password, db.dbname) == (
        "localhost",
        5432,
        "postgres",
        "",
        "orders",
    )


@pytest.mark.parametrize(
    ("encoded", "password"),
    [
        ("p%40ss%3Aw%2Frd", "p@ss:w/rd"),
        ("%23hash%25percent%3F", "#hash%percent?"),
        ("with%20space", "with space"),
    ],
)
def test_percent_encoded_password(encoded, password):
    db = DatabaseConfig.from_url(f"postgresql://so%40user:{encoded}@127.0.0.1:5433/my%2Ddb")
    assert (db.user, db.password, db.dbname, db.port) == ("so@user", password, "my-db", 5433)
    env = eventsourcing_env(Settings(database=db))
    assert env["POSTGRES_PASSWORD"] == password
    assert env["POSTGRES_USER"] == "so@user"


def test_query_options_are_kept():
    db = DatabaseConfig.from_url("postgresql://u@h/d?sslmode=require&application_name=so")
    assert db.options == {"sslmode": "require", "application_name": "so"}


def test_the_password_is_hidden_unless_asked_for():
    db = DatabaseConfig.from_url("postgresql://u:topsecret@h:5432/d")
    assert "topsecret" not in db.url()
    assert db.url() == "postgresql://u:***@h:5432/d"
    assert db.url(with_password=True) == "postgresql://u:topsecret@h:5432/d"
    assert "topsecret" not in redact("postgresql://u:topsecret@h:5432/d")
    assert DatabaseConfig.from_url(db.url(with_password=True)) == db


@pytest.mark.parametrize(
    "password", ["plain", "p@ss:w", "p/ss", "p#ss", "p?ss", "p%41ss", "p ss", "üñí"]
)
def test_url_with_password_parses_back_to_the_same_config(password):
    db = DatabaseConfig(
        kind="postgres", dbname="orders db", host="h", port=5433, user="so@user", password=password
    )
    assert DatabaseConfig.from_url(db.url(with_password=True)) == db
    assert DatabaseConfig.from_url(db.url()).password == "***"


@pytest.mark.parametrize(
    "url", ["postgresql://u@h:5432/", "postgresql://u@h", "postgresql://u:pw@h:notaport/d"]
)
def test_malformed_postgres_urls(url):
    with pytest.raises(SettingsError, match="DATABASE_URL") as raised:
        DatabaseConfig.from_url(url)
    assert ":pw@" not in str(raised.value)


# ---------------------------------------------------------------------- SQLite URLs
def test_sqlite_relative_path_is_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = DatabaseConfig.from_url("sqlite:///relative.db")
    assert db.kind == "sqlite"
    assert db.dbname == str(tmp_path.resolve() / "relative.db")
    assert Path(db.dbname).is_absolute()
    sub = DatabaseConfig.from_url("sqlite:///data/orders.db")
    assert sub.dbname == str(tmp_path.resolve() / "data" / "orders.db")


def test_sqlite_absolute_path(tmp_path):
    target = tmp_path.resolve() / "absolute.db"
    db = DatabaseConfig.from_url(f"sqlite:///{target}")  # sqlite:////tmp/.../absolute.db
    assert str(target).startswith("/")
    assert db.dbname == str(target)
    assert DatabaseConfig.from_url("sqlite:////absolute.db").dbname == "/absolute.db"
    assert DatabaseConfig.from_url(db.url()) == db


def test_sqlite_in_memory():
    assert DatabaseConfig.from_url("sqlite:///:memory:").dbname == ":memory:"


@pytest.mark.parametrize("environ", [{}, {"DATABASE_URL": ""}])
def test_unset_means_serviceorders_db_in_cwd(tmp_path, monkeypatch, environ):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env(environ)
    assert settings.database.kind == "sqlite"
    assert settings.database.dbname == str(tmp_path.resolve() / "serviceorders.db")
    assert Path(settings.database.dbname).is_absolute()
    assert DatabaseConfig.from_url(None) == settings.database


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:", "sqlite:///"])
def test_malformed_sqlite_urls(url):
    with pytest.raises(SettingsError, match="sqlite"):
        DatabaseConfig.from_url(url)


@pytest.mark.parametrize(
    "url", ["mysql://u@h/d", "http://example.com/db", "orders.db", "postgresql+asyncpg://u@h/d"]
)
def test_bad_scheme(url):
    with pytest.raises(SettingsError, match="unsupported scheme"):
        DatabaseConfig.from_url(url)
    with pytest.raises(SettingsError):
        Settings.from_env({"DATABASE_URL": url})


# ------------------------------------------------------------------- other settings
def test_from_env_reads_only_the_mapping_it_is_given(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/from_os_environ")
    monkeypatch.setenv("SERVICEORDERS_SNAPSHOT_INTERVAL", "7")
    settings = Settings.from_env({"DATABASE_URL": "sqlite:////tmp/given.db"})
    assert settings.database.dbname == "/tmp/given.db"
    assert settings.snapshot_interval == 50


def test_from_env_values_and_overrides():
    env = {
        "DATABASE_URL": "sqlite:////tmp/x.db",
        "SERVICEORDERS_SNAPSHOT_INTERVAL": "10",
        "SERVICEORDERS_FOUR_EYES": "no",
        "SERVICEORDERS_DB_LOCK_TIMEOUT": "9",
        "SERVICEORDERS_DB_POOL_SIZE": "3",
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
    }
    settings = Settings.from_env(env)
    assert (
        settings.snapshot_interval,
        settings.four_eyes,
        settings.lock_timeout_seconds,
        settings.pool_size,
        settings.kafka_bootstrap_servers,
    ) == (10, False, 9, 3, "k:9092")
    overridden = Settings.from_env(env, snapshot_interval=5, four_eyes=None)
    assert (overridden.snapshot_interval, overridden.four_eyes) == (5, False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVICEORDERS_SNAPSHOT_INTERVAL", "often"),
        ("SERVICEORDERS_FOUR_EYES", "maybe"),
        ("SERVICEORDERS_DB_POOL_SIZE", "1.5"),
    ],
)
def test_malformed_values_name_the_setting(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


# -------------------------------------------------------- the eventsourcing config
def test_eventsourcing_env_for_postgres_is_complete():
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://so:pw@db:6000/orders"},
        lock_timeout_seconds=7,
        pool_size=3,
        pool_max_overflow=1,
        write_timeout_seconds=12,
    )
    assert eventsourcing_env(settings) == {
        "CREATE_TABLE": "n",
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "orders",
        "POSTGRES_HOST": "db",
        "POSTGRES_PORT": "6000",
        "POSTGRES_USER": "so",
        "POSTGRES_PASSWORD": "pw",
        "POSTGRES_LOCK_TIMEOUT": "7",
        "POSTGRES_POOL_SIZE": "3",
        "POSTGRES_MAX_OVERFLOW": "1",
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "12",
        "APPLICATION_RECORDER_TOPIC": "serviceorders.storage.recorders:IntakePostgresRecorder",
    }
    assert eventsourcing_env(settings, create_tables=True)["CREATE_TABLE"] == "y"


def test_eventsourcing_env_for_sqlite_is_complete(tmp_path):
    target = tmp_path.resolve() / "so.db"
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{target}"})
    assert eventsourcing_env(settings, create_tables=True) == {
        "CREATE_TABLE": "y",
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(target),
        "SQLITE_LOCK_TIMEOUT": "5",
        "APPLICATION_RECORDER_TOPIC": "serviceorders.storage.recorders:IntakeSqliteRecorder",
    }


STRAY = {
    "PERSISTENCE_MODULE": "eventsourcing.popo",
    "SERVICEORDERS_PERSISTENCE_MODULE": "eventsourcing.popo",
    "POSTGRES_DBNAME": "nonexistent",
    "POSTGRES_HOST": "nowhere.invalid",
    "SQLITE_DBNAME": ":memory:",
    "SERVICEORDERS_SQLITE_DBNAME": ":memory:",
    "CREATE_TABLE": "n",
    "IS_SNAPSHOTTING_ENABLED": "n",
}


def test_the_application_ignores_stray_persistence_variables(
    tmp_path, monkeypatch, actors, samples
):
    for name, value in STRAY.items():
        monkeypatch.setenv(name, value)
    db_file = tmp_path.resolve() / "orders.db"
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{db_file}"})

    init_database(settings)
    assert db_file.exists()
    first = build_application(settings)
    try:
        assert type(first.factory).__module__ == "eventsourcing.sqlite"
        assert first.env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite"
        assert first.env.get("SQLITE_DBNAME") == str(db_file)
        assert "POSTGRES_DBNAME" not in first.env
        assert first.snapshots is not None
        received = cmd.ReceiveOrder(samples.header("env-1"), tuple(samples.items()))
        order_id, created = id_created(first.handle(actors.upstream, received))
        assert created
    finally:
        first.close()

    second = build_application(settings)  # a new process on the same file
    try:
        assert second.find_by_external_id("env-1").id == order_id
        assert len(second.recorder.select_events(order_id)) == 2
    finally:
        second.close()


# ------------------------------------------------------------- hub allow-list at start
@pytest.mark.parametrize("spec", ["*.ex ample.com", "[::1", "999.1.1.1/40", "bad:port:x"])
def test_a_malformed_hub_allow_list_is_refused_when_the_settings_are_read(spec):
    # every process reads its settings at start: a bad list stops it there, instead of
    # answering each hub registration with a 500 later
    with pytest.raises(SettingsError, match="SERVICEORDERS_HUB_ALLOWED_HOSTS"):
        Settings.from_env({"SERVICEORDERS_HUB_ALLOWED_HOSTS": spec})


def test_a_well_formed_hub_allow_list_is_kept():
    spec = "hooks.example.com:443,*.partner.example,10.1.0.0/16,[::1]:8080"
    assert Settings.from_env({"SERVICEORDERS_HUB_ALLOWED_HOSTS": spec}).hub_allowed_hosts == spec


# ----------------------------------------------------------- review policies (issue 17)
def test_review_policies_default_to_every_change_a_proposal_and_no_hold():
    policy = Settings.from_env({}).policy()
    assert (policy.four_eyes, policy.direct_fields, policy.hold_on_proposal) == (
        True,
        frozenset(),
        False,
    )


def test_review_policies_are_read_from_the_environment(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path.resolve() / 'orders.db'}",
        "SERVICEORDERS_PROPOSAL_DIRECT_FIELDS": " description , priority,description",
        "SERVICEORDERS_HOLD_ON_PROPOSAL": "yes",
        "SERVICEORDERS_FOUR_EYES": "no",
    }
    settings = Settings.from_env(env)
    assert settings.proposal_direct_fields == ("description", "priority")
    assert settings.policy().direct_fields == frozenset({"description", "priority"})
    init_database(settings)
    app = build_application(settings)  # the composition root hands them to the application
    try:
        assert (app.policy.four_eyes, app.policy.direct_fields, app.policy.hold_on_proposal) == (
            False,
            frozenset({"description", "priority"}),
            True,
        )
    finally:
        app.close()


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SERVICEORDERS_PROPOSAL_DIRECT_FIELDS", "description,items", "items"),
        ("SERVICEORDERS_PROPOSAL_DIRECT_FIELDS", "requestedStartDate", "requestedStartDate"),
        ("SERVICEORDERS_HOLD_ON_PROPOSAL", "sometimes", "yes or no"),
    ],
)
def test_malformed_review_policies_name_the_setting_and_the_value(name, value, named):
    with pytest.raises(SettingsError, match=name) as refused:
        Settings.from_env({name: value})
    assert named in str(refused.value)
