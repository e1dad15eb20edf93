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
