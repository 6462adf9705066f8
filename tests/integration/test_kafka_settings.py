"""The Kafka settings: read from the environment, their defaults, the TLS / SASL options passed
through to the client as they are, and their secrets never shown."""

from __future__ import annotations

import pytest
from serviceorders.notifications.kafka import KafkaNotConfigured, client_options, producer_options
from serviceorders.settings import KAFKA_PASSTHROUGH, Settings, SettingsError

pytestmark = pytest.mark.integration

DB = {"DATABASE_URL": "sqlite:////tmp/kafka-settings.db"}


def test_defaults():
    s = Settings.from_env(DB)
    assert s.kafka_bootstrap_servers is None  # `serve` starts the embedded broker
    assert s.consumer_group == "serviceorders"
    assert s.inbound_topic == "serviceorder.inbound"
    assert s.events_topic == "serviceorder.events"
    assert s.dlq_topic is None
    assert s.dead_letter_topic == "serviceorder.inbound.dlq"
    assert (s.topic_partitions, s.topic_replication, s.consume_batch) == (3, 1, 500)
    assert s.log_behind_policy == "rewind"
    assert s.kafka_compression == "none"
    assert s.kafka_options == {}


def test_empty_variables_mean_the_defaults():
    s = Settings.from_env(
        {
            **DB,
            **{
                name: ""
                for name in (
                    "KAFKA_BOOTSTRAP_SERVERS",
                    "SERVICEORDERS_CONSUMER_GROUP",
                    "SERVICEORDERS_INBOUND_TOPIC",
                    "SERVICEORDERS_EVENTS_TOPIC",
                    "SERVICEORDERS_DLQ_TOPIC",
                    "SERVICEORDERS_TOPIC_PARTITIONS",
                    "SERVICEORDERS_CONSUME_BATCH",
                    "SERVICEORDERS_LOG_BEHIND_POLICY",
                    "SERVICEORDERS_KAFKA_COMPRESSION",
                    *KAFKA_PASSTHROUGH,
                )
            },
        }
    )
    assert s == Settings.from_env(DB)


def test_every_setting_from_the_environment():
    s = Settings.from_env(
        {
            **DB,
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
            "SERVICEORDERS_CONSUMER_GROUP": "orders-eu",
            "SERVICEORDERS_INBOUND_TOPIC": "so.in",
            "SERVICEORDERS_EVENTS_TOPIC": "so.out",
            "SERVICEORDERS_DLQ_TOPIC": "so.dead",
            "SERVICEORDERS_TOPIC_PARTITIONS": "12",
            "SERVICEORDERS_TOPIC_REPLICATION": "3",
            "SERVICEORDERS_CONSUME_BATCH": "50",
            "SERVICEORDERS_LOG_BEHIND_POLICY": "stop",
            "SERVICEORDERS_KAFKA_COMPRESSION": "lz4",
        }
    )
    assert (
        s.kafka_bootstrap_servers,
        s.consumer_group,
        s.inbound_topic,
        s.events_topic,
        s.dead_letter_topic,
    ) == ("k1:9092,k2:9093", "orders-eu", "so.in", "so.out", "so.dead")
    assert (s.topic_partitions, s.topic_replication, s.consume_batch) == (12, 3, 50)
    assert s.log_behind_policy == "stop"
    assert client_options(s)["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert producer_options(s)["compression_type"] == "lz4"
    assert "compression_type" not in client_options(s)  # consumers and admin take none


def test_the_dead_letter_topic_follows_the_inbound_topic():
    s = Settings.from_env({**DB, "SERVICEORDERS_INBOUND_TOPIC": "crm.orders"})
    assert s.dead_letter_topic == "crm.orders.dlq"


def test_keyword_overrides_win_over_the_environment():
    s = Settings.from_env(
        {**DB, "SERVICEORDERS_CONSUMER_GROUP": "from-env"},
        consumer_group="from-flag",
        inbound_topic=None,
    )
    assert (s.consumer_group, s.inbound_topic) == ("from-flag", "serviceorder.inbound")


SECURITY = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker.example.com:9094",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "orders-svc",
    "KAFKA_SASL_PASSWORD": "sasl-s3cret",
    "KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem",
    "KAFKA_SSL_CERTFILE": "/etc/kafka/client.pem",
    "KAFKA_SSL_KEYFILE": "/etc/kafka/client.key",
    "KAFKA_SSL_PASSWORD": "key-s3cret",
    "KAFKA_SSL_CHECK_HOSTNAME": "false",
    "KAFKA_CLIENT_ID": "serviceorders-1",
}


def test_security_options_are_passed_through_to_the_client():
    s = Settings.from_env({**DB, **SECURITY})
    assert s.kafka_options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "orders-svc",
        "sasl_plain_password": "sasl-s3cret",
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_password": "key-s3cret",
        "ssl_check_hostname": "false",
        "client_id": "serviceorders-1",
    }
    options = client_options(s)
    assert options == {
        "bootstrap_servers": ["broker.example.com:9094"],
        **s.kafka_options,
        "ssl_check_hostname": False,
    }


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("YES", True), ("1", True), ("false", False), ("no", False), ("0", False)],
)
def test_ssl_check_hostname_becomes_a_boolean(raw, value):
    s = Settings.from_env(
        {**DB, "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_SSL_CHECK_HOSTNAME": raw}
    )
    assert client_options(s)["ssl_check_hostname"] is value


def test_unknown_kafka_variables_are_not_passed_through():
    s = Settings.from_env(
        {
            **DB,
            "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "KAFKA_ACKS": "0",
            "KAFKA_SASL_OAUTH_TOKEN": "x",
        }
    )
    assert s.kafka_options == {}
    assert client_options(s) == {"bootstrap_servers": ["k:9092"]}


def test_no_bootstrap_servers_no_client():
    with pytest.raises(KafkaNotConfigured, match="KAFKA_BOOTSTRAP_SERVERS"):
        client_options(Settings.from_env(DB))


@pytest.mark.parametrize("show", [repr, str])
def test_kafka_passwords_are_redacted(show):
    s = Settings.from_env({**DB, **SECURITY})
    text = show(s)
    assert "sasl-s3cret" not in text and "key-s3cret" not in text
    assert "'sasl_plain_password': '***'" in text and "'ssl_password': '***'" in text
    assert "orders-svc" in text  # the rest stays readable
    assert "SASL_SSL" in text
    assert s.kafka_options["sasl_plain_password"] == "sasl-s3cret"  # only hidden, not lost


def test_the_passwords_in_an_exception_from_settings_stay_hidden():
    s = Settings.from_env({**DB, **SECURITY})
    try:
        raise RuntimeError(f"could not connect with {s!r}")
    except RuntimeError as e:
        assert "s3cret" not in str(e)


def test_the_database_password_is_redacted_too():
    s = Settings.from_env({"DATABASE_URL": "postgresql://u:db-s3cret@h/d", **SECURITY})
    assert "db-s3cret" not in repr(s)


@pytest.mark.parametrize(
    "name",
    [
        "SERVICEORDERS_TOPIC_PARTITIONS",
        "SERVICEORDERS_TOPIC_REPLICATION",
        "SERVICEORDERS_CONSUME_BATCH",
    ],
)
@pytest.mark.parametrize("raw", ["three", "1.5", "10k"])
def test_integers_that_are_not(name, raw):
    with pytest.raises(SettingsError, match=f"{name} must be an integer, not '{raw}'"):
        Settings.from_env({**DB, name: raw})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("SERVICEORDERS_TOPIC_PARTITIONS", "0"),
        ("SERVICEORDERS_TOPIC_PARTITIONS", "1001"),
        ("SERVICEORDERS_TOPIC_REPLICATION", "0"),
        ("SERVICEORDERS_CONSUME_BATCH", "0"),
        ("SERVICEORDERS_CONSUME_BATCH", "10001"),
        ("SERVICEORDERS_LOG_BEHIND_POLICY", "skip"),
        ("SERVICEORDERS_LOG_BEHIND_POLICY", "REWIND"),
        ("SERVICEORDERS_KAFKA_COMPRESSION", "brotli"),
        ("SERVICEORDERS_KAFKA_COMPRESSION", "ZSTD"),
    ],
)
def test_values_out_of_range_are_a_settings_error_naming_the_variable(name, raw):
    with pytest.raises(SettingsError, match=f"^{name}: .*\\(got '{raw}'\\)$"):
        Settings.from_env({**DB, name: raw})


def test_the_cli_refuses_a_bad_kafka_setting_without_a_traceback(tmp_path):
    from click.testing import CliRunner
    from serviceorders.cli import main

    result = CliRunner().invoke(
        main,
        ["dlq", "list"],
        env={
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "SERVICEORDERS_CONSUME_BATCH": "lots",
        },
    )
    assert result.exit_code == 2
    assert "SERVICEORDERS_CONSUME_BATCH must be an integer" in result.output
    assert "Traceback" not in result.output
