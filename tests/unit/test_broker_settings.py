"""Broker URL settings: schemes, vhosts, and a password that never shows."""

from __future__ import annotations

import pytest

from conveyor.broker.settings import BrokerSettings, BrokerSettingsError, mask

URL = "amqp://user:s3cret@rabbit.example:5672/%2Fprod"


def test_the_password_is_masked_in_str_repr_and_masked():
    settings = BrokerSettings(URL)
    for shown in (str(settings), repr(settings), settings.masked):
        assert "s3cret" not in shown
        assert "user:***@rabbit.example:5672" in shown


def test_mask_leaves_a_url_without_password_alone():
    assert mask("amqp://rabbit:5672/") == "amqp://rabbit:5672/"
    assert mask("amqp://guest@rabbit/") == "amqp://guest@rabbit/"


def test_a_password_with_an_at_sign_is_masked_whole():
    assert mask("amqps://u:p%40ss@h/v") == "amqps://u:***@h/v"


@pytest.mark.parametrize(("url", "vhost"), [
    ("amqp://h", "/"), ("amqp://h/", "/"), ("amqp://h/%2F", "/"), ("amqp://h/team-a", "team-a"),
])
def test_the_vhost_is_the_decoded_path(url: str, vhost: str):
    assert BrokerSettings(url).vhost == vhost


def test_amqps_means_tls():
    assert BrokerSettings("amqps://h/").tls
    assert not BrokerSettings("amqp://h/").tls


@pytest.mark.parametrize("url", ["http://u:s3cret@h/", "s3cret", "amqp:///vhost"])
def test_an_unusable_url_is_refused_without_showing_the_password(url: str):
    with pytest.raises(BrokerSettingsError) as info:
        BrokerSettings(url)
    assert "s3cret" not in str(info.value)


def test_from_env_needs_the_variable():
    with pytest.raises(BrokerSettingsError, match="CONVEYOR_AMQP_URL is not set"):
        BrokerSettings.from_env({})
    settings = BrokerSettings.from_env({"CONVEYOR_AMQP_URL": URL,
                                        "CONVEYOR_AMQP_CA_FILE": "/ca.pem"})
    assert (settings.url, settings.ca_file) == (URL, "/ca.pem")


def test_the_ca_file_comes_from_the_environment_trimmed_and_empty_means_none():
    env = {"CONVEYOR_AMQP_URL": "amqps://h/"}
    assert BrokerSettings.from_env({**env, "CONVEYOR_AMQP_CA_FILE": " /ca.pem\n"}).ca_file \
        == "/ca.pem"
    assert BrokerSettings.from_env({**env, "CONVEYOR_AMQP_CA_FILE": " "}).ca_file is None


def test_the_broker_is_verified_by_the_urls_host_unless_server_name_indication_names_one():
    assert BrokerSettings("amqps://u:p@rabbit.example/").server_name == "rabbit.example"
    forwarded = BrokerSettings("amqps://u:p@127.0.0.1:15671/v?server_name_indication="
                               "rabbit.prod.svc&heartbeat=30")
    assert forwarded.server_name == "rabbit.prod.svc"
    assert forwarded.host == "127.0.0.1"
    # pika refuses parameters it does not know: it gets the URL without ours, the rest kept.
    assert forwarded.client_url == "amqps://u:p@127.0.0.1:15671/v?heartbeat=30"
    assert BrokerSettings("amqps://h/v").client_url == "amqps://h/v"


@pytest.mark.parametrize(("url", "port"), [
    ("amqps://h/", 5671), ("amqp://h/", 5672), ("amqps://h:1234/", 1234),
])
def test_the_port_defaults_by_scheme(url: str, port: int):
    assert BrokerSettings(url).port == port


@pytest.mark.parametrize(("url", "message"), [
    # pika's ssl_options would replace our verification with whatever it spells.
    ("amqps://u:s3cret@h/?ssl_options={'cert_reqs':0}", "ssl_options parameter is not supported"),
    ("amqp://u:s3cret@h/?server_name_indication=x", "applies to amqps:// only"),
    ("amqps://u:s3cret@h/?server_name_indication=", "must name one host"),
    ("amqps://u:s3cret@h/?server_name_indication=a&server_name_indication=b",
     "must name one host"),
    ("amqps://u:s3cret@h:five/", "port is not a number"),
])
def test_tls_parameters_that_cannot_be_used_are_refused_with_the_password_masked(
        url: str, message: str):
    with pytest.raises(BrokerSettingsError, match=message) as info:
        BrokerSettings(url)
    assert "s3cret" not in str(info.value)
    assert "u:***@h" in str(info.value)
