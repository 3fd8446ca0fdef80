"""SSRF policy: address classes, allowed networks, DNS rebinding and IP-literal hosts."""

from __future__ import annotations

import ipaddress

import pytest

from runtime.errors import ValidationFailed
from services.crawler.domain.networks import (
    AddressRefused,
    NetworkPolicy,
    classify,
    embedded_ipv4,
    literal_address,
)

DEFAULT = NetworkPolicy()

PUBLIC = [
    "93.184.215.14",
    "8.8.8.8",
    "1.1.1.1",
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.1",  # just above it
    "100.63.255.255",  # just below 100.64/10
    "100.128.0.1",  # just above it
    "169.253.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:81b::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "[2606:4700:4700::1111]",
]

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("100.127.255.254", "private"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("169.254.0.1", "link-local"),
    ("169.254.169.253", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "reserved"),
    ("198.18.0.1", "reserved"),
    ("2001:db8::1", "reserved"),
    ("0.1.2.3", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("255.255.255.255", "broadcast"),
    # IPv6 forms that carry an IPv4 address are judged by that address.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("64:ff9b::7f00:1", "loopback"),  # NAT64
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("2002:7f00:1::", "loopback"),  # 6to4
    ("2002:c0a8:101::1", "private"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible
    ("64:ff9b:1::1", "private"),  # local-use NAT64
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    DEFAULT.check("example.com", address)


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_non_public_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    with pytest.raises(AddressRefused) as caught:
        DEFAULT.check("evil.example", address)
    assert caught.value.reason == reason
    assert caught.value.host == "evil.example"
    message = str(caught.value)
    assert "evil.example" in message
    assert reason in message
    assert address.strip("[]").split("%")[0] in message


def test_embedded_ipv4_is_named_in_the_message() -> None:
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1.*loopback"):
        DEFAULT.check("h", "::ffff:7f00:1")


def test_unparseable_addresses_are_refused() -> None:
    with pytest.raises(AddressRefused, match="not an IP address"):
        DEFAULT.check("h", "localhost")


def test_an_allowed_network_opens_everything_inside_it() -> None:
    policy = NetworkPolicy.from_setting("127.0.0.0/8, 10.1.0.0/16")
    policy.check("localhost", "127.0.0.1")
    policy.check("localhost", "127.8.9.10")
    policy.check("localhost", "::ffff:127.0.0.1")  # judged by its IPv4 address
    policy.check("intranet", "10.1.200.3")
    with pytest.raises(AddressRefused, match="private"):
        policy.check("intranet", "10.2.0.1")
    with pytest.raises(AddressRefused, match="loopback"):
        policy.check("localhost", "::1")
    policy.check("example.com", "8.8.8.8")


@pytest.mark.parametrize("setting", ["::/0", "::ffff:0:0/96", "2002::/16", "64:ff9b::/96"])
def test_ipv6_allowances_do_not_open_embedded_ipv4(setting: str) -> None:
    policy = NetworkPolicy.from_setting(setting)
    for address in ("::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::a00:1"):
        with pytest.raises(AddressRefused):
            policy.check("h", address)


def test_ipv6_allowed_networks() -> None:
    policy = NetworkPolicy.from_setting("::1/128,fd00:1::/64")
    policy.check("h", "::1")
    policy.check("h", "fd00:1::5")
    with pytest.raises(AddressRefused):
        policy.check("h", "fd00:2::5")
    with pytest.raises(AddressRefused):
        policy.check("h", "127.0.0.1")


@pytest.mark.parametrize(
    "setting",
    ["169.254.0.0/16", "0.0.0.0/0", "169.254.169.0/24", "100.64.0.0/10", "::/0", "fd00::/8"],
)
def test_cloud_metadata_stays_refused_inside_wide_allowed_networks(setting: str) -> None:
    policy = NetworkPolicy.from_setting(setting)
    for address in (
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
    ):
        with pytest.raises(AddressRefused, match="cloud metadata"):
            policy.check("metadata", address)


def test_wide_allowed_network_still_opens_other_addresses_around_metadata() -> None:
    NetworkPolicy.from_setting("169.254.0.0/16").check("h", "169.254.1.1")
    NetworkPolicy.from_setting("0.0.0.0/0").check("h", "10.0.0.1")


def test_cloud_metadata_opens_only_for_its_exact_address() -> None:
    policy = NetworkPolicy.from_setting("169.254.169.254/32, fd00:ec2::254/128")
    policy.check("metadata", "169.254.169.254")
    policy.check("metadata", "::ffff:169.254.169.254")
    policy.check("metadata", "fd00:ec2::254")
    with pytest.raises(AddressRefused, match="cloud metadata"):
        policy.check("metadata", "100.100.100.200")
    with pytest.raises(AddressRefused, match="link-local"):
        policy.check("metadata", "169.254.169.253")


def test_check_all_refuses_the_host_when_any_answer_is_bad() -> None:
    DEFAULT.check_all("example.com", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    with pytest.raises(AddressRefused, match="loopback") as caught:
        DEFAULT.check_all("rebind.example", ["93.184.215.14", "127.0.0.1"])
    assert caught.value.host == "rebind.example"
    with pytest.raises(AddressRefused, match="no addresses"):
        DEFAULT.check_all("empty.example", [])


def test_from_setting_parses_and_tolerates_whitespace() -> None:
    assert NetworkPolicy.from_setting(None).allowed == ()
    assert NetworkPolicy.from_setting("").allowed == ()
    assert NetworkPolicy.from_setting("  ,  ").allowed == ()
    policy = NetworkPolicy.from_setting(" 127.0.0.0/8 ,\t10.0.0.0/8,, ::1 ")
    assert policy.allowed == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-a-network", "10.0.0.1/8", "127.0.0.0/8;rm"])
def test_from_setting_names_an_invalid_network(bad: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        NetworkPolicy.from_setting(f"192.168.0.0/16, {bad}")
    assert repr(bad) in caught.value.message
    assert "TRELLIS_CRAWLER_ALLOWED_NETWORKS" in caught.value.message


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("3232235777", "192.168.1.1"),
        ("\uff14\uff12.\uff11.\uff12.\uff13", "42.1.2.3"),  # full-width digits
        ("127\u30020\u30020\u30021", "127.0.0.1"),  # ideographic full stop
        ("%31%32%37.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", str(ipaddress.ip_address("::ffff:127.0.0.1"))),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("[FE80::1%25eth0]", "fe80::1%eth0"),
        ("::1", "::1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_literal_address_normalises_every_ip_form(host: str, expected: str) -> None:
    assert literal_address(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost",
        "127.0.0.1.example.com",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.2.3.256",
        "1.2.65536",
        "4294967296",
        "08.0.0.1",  # 0-prefixed means octal, and 8 is not an octal digit
        "0xg.1",
        "1..2",
        "..",
        "",
        "[example.com]",
        "[127.0.0.1]",
        "1.2.3.4..",
    ],
)
def test_literal_address_is_none_for_names_and_invalid_numbers(host: str) -> None:
    assert literal_address(host) is None


def test_literal_addresses_of_tricky_forms_are_then_refused() -> None:
    for host in ("2130706433", "0x7f.1", "017700000001", "[::ffff:127.0.0.1]", "0xa9fea9fe"):
        address = literal_address(host)
        assert address is not None
        with pytest.raises(AddressRefused):
            DEFAULT.check(host, address)


def test_classify_and_embedded_ipv4_helpers() -> None:
    assert classify(ipaddress.ip_address("8.8.8.8")) is None
    assert classify(ipaddress.ip_address("10.0.0.1")) == "private"
    mapped = ipaddress.IPv6Address("::ffff:1.2.3.4")
    assert embedded_ipv4(mapped) == ipaddress.IPv4Address("1.2.3.4")
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None
