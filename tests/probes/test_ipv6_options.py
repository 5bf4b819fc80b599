"""Options of the IPv6 readiness probe: defaults under the target host, and refused values."""

from __future__ import annotations

import pytest

from probes.ipv6.http_check import parse_response_head, split_url
from probes.ipv6.options import resolve_options


def test_defaults_live_under_the_target_host() -> None:
    opts = resolve_options("hamletnet.example.vn", {})
    assert opts.dual_stack_url == "http://ds.hamletnet.example.vn/"
    assert opts.ipv4_only_url == "http://ipv4.hamletnet.example.vn/"
    assert opts.ipv6_only_url == "http://ipv6.hamletnet.example.vn/"
    assert opts.large_response_url == "http://ipv6.hamletnet.example.vn/large"
    assert opts.ipv6_only_dns_name == "ds.v6ns.hamletnet.example.vn"
    assert opts.ipv4_literal_url is None and opts.resolver is None
    assert (opts.check_timeout_s, opts.slow_s, opts.large_response_min_bytes) == (15, 5, 1600)
    assert "test-ipv6.com" not in opts.model_dump_json()


def test_given_options_win_and_one_value_becomes_a_list() -> None:
    opts = resolve_options(
        "h.vn", {"dual_stack_url": "https://ds.other.vn/x?y=1", "resolver": "2001:db8::53"}
    )
    assert opts.dual_stack_url == "https://ds.other.vn/x?y=1"
    assert opts.ipv6_only_url == "http://ipv6.h.vn/"
    assert opts.resolver == ["2001:db8::53"]


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("h.vn", {"dual_stack_url": "ftp://x/"}, "dual_stack_url: .*not an http:// or https://"),
        ("h.vn", {"check_timeout_s": 0}, "check_timeout_s: .*greater than 0"),
        ("h.vn", {"large_response_min_bytes": 1000}, "large_response_min_bytes"),
        ("h.vn", {"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ("h.vn:80", {}, "must be a host name"),
        ("http://h.vn/", {}, "must be a host name"),
    ],
)
def test_bad_options_are_named(target: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_options(target, options)


def test_url_parts() -> None:
    assert split_url("http://[2001:db8::10]:8080/large") == (
        "2001:db8::10", "[2001:db8::10]:8080", 8080, "/large", False,
    )  # fmt: skip
    assert split_url("https://ds.h.vn") == ("ds.h.vn", "ds.h.vn", 443, "/", True)


def test_response_head() -> None:
    # As python -m http.server (the lab's sites) answers.
    head = (
        b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\n"
        b"Content-type: application/octet-stream\r\nContent-Length: 4000\r\n\r\n"
    )
    status, headers = parse_response_head(head)
    assert status == 200 and headers["content-length"] == "4000"
    with pytest.raises(ValueError, match=r"not an HTTP/1\.x status line"):
        parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n")
