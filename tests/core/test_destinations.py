"""The destination policy as pure logic, and its configuration."""

from __future__ import annotations

import ipaddress

import pytest

from omnirelay.config import load_settings
from omnirelay.core.destinations import DestinationPolicy, url_origin, without_userinfo
from omnirelay.errors import ConfigError

PUBLIC = "93.184.215.14"


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.16.5.4", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fd12:3456::1", "unique-local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.251", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "not globally routable"), ("::ffff:10.0.0.1", "private"),
])
def test_production_refuses_special_addresses(address: str, reason: str) -> None:
    refusal = DestinationPolicy.build([], allow_loopback=False).refusal(
        "hooks.example", ipaddress.ip_address(address))
    shown = ipaddress.ip_address(address)  # as Python spells it (::ffff:a00:1 on 3.11)
    assert refusal == f"hooks.example resolves to {shown}, a {reason} address"


def test_public_addresses_pass_and_development_opens_only_loopback() -> None:
    production = DestinationPolicy.build([], allow_loopback=False)
    development = DestinationPolicy.build([], allow_loopback=True)
    assert production.refusal("example.com", ipaddress.ip_address(PUBLIC)) is None
    assert production.refusal("example.com", ipaddress.ip_address("2606:4700::1")) is None
    assert development.refusal("localhost", ipaddress.ip_address("127.0.0.1")) is None
    assert development.refusal("localhost", ipaddress.ip_address("::1")) is None
    assert development.refusal("x", ipaddress.ip_address("10.0.0.1")) is not None
    assert development.refusal("x", ipaddress.ip_address("169.254.169.254")) is not None


def test_the_allow_list_opens_named_hosts_and_networks_only() -> None:
    policy = DestinationPolicy.build(["Hooks.Internal.Example.", "10.1.0.0/16", "fd00::7"],
                                     allow_loopback=False)
    assert policy.refusal("hooks.internal.example", ipaddress.ip_address("10.9.9.9")) is None
    assert policy.refusal("other.example", ipaddress.ip_address("10.1.200.3")) is None
    assert policy.refusal("other.example", ipaddress.ip_address("::ffff:10.1.0.1")) is None
    assert policy.refusal("other.example", ipaddress.ip_address("fd00::7")) is None
    assert policy.refusal("other.example", ipaddress.ip_address("10.2.0.1")) is not None
    assert policy.refusal("sub.hooks.internal.example",
                          ipaddress.ip_address("10.9.9.9")) is not None


@pytest.mark.parametrize("entry", ["http://hooks.example", "10.0.0.0/33", "hooks example",
                                   "", "hooks.example/path"])
def test_a_bad_allow_list_entry_is_a_configuration_error(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"\[webhooks\] allowed_destinations"):
        load_settings(None, environ={}, overrides={"webhooks": {"allowed_destinations": [entry]}})


def test_the_allow_list_is_read_from_toml_and_environment() -> None:
    settings = load_settings(None, environ={
        "OMNIRELAY_WEBHOOKS__ALLOWED_DESTINATIONS": '["hooks.internal", "10.0.0.0/8"]'})
    assert settings.webhooks.allowed_destinations == ("hooks.internal", "10.0.0.0/8")
    with pytest.raises(ConfigError, match="must be an array of strings"):
        load_settings(None, environ={"OMNIRELAY_WEBHOOKS__ALLOWED_DESTINATIONS": "10.0.0.0/8"})


def test_url_pieces() -> None:
    assert url_origin("HTTP://User@Hooks.Example:8443/dlr?x=1") == "HTTP://User@Hooks.Example:8443"
    assert url_origin("http://hooks.example?x") == "http://hooks.example"
    assert url_origin("http://hooks.example") == "http://hooks.example"
    assert without_userinfo("https://u:secret@hooks.example/x") == "https://hooks.example/x"
    assert without_userinfo("https://hooks.example/x") == "https://hooks.example/x"
