"""DNS probe logic without a network: judging answers, resolver addresses, options."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
import pytest

from probes.dns import judge, parse_options, resolver_address, system_resolver


def _answer(qname: str, qtype: str, rcode: int, records: list[str]) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if records:
        cname = dns.rrset.from_text(qname, 300, "IN", "CNAME", "edge.example.vn.")
        response.answer.append(cname)  # a CNAME in front is not counted as an answer
        response.answer.append(dns.rrset.from_text("edge.example.vn.", 300, "IN", qtype, *records))
    return response


def test_noerror_counts_records_of_the_type_asked() -> None:
    response = _answer("www.example.vn.", "AAAA", dns.rcode.NOERROR, ["2001:db8::1", "2001:db8::2"])
    assert judge(response, "AAAA") == ("NOERROR", 2, None)


def test_noerror_without_records_is_ok_with_zero_answers() -> None:
    assert judge(_answer("v4.example.vn.", "AAAA", dns.rcode.NOERROR, []), "AAAA") == (
        "NOERROR", 0, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rcode", "text", "words"),
    [
        (dns.rcode.NXDOMAIN, "NXDOMAIN", "does not exist"),
        (dns.rcode.SERVFAIL, "SERVFAIL", "failed"),
    ],
)
def test_error_rcodes_are_failures_that_keep_the_rcode(rcode: int, text: str, words: str) -> None:
    got_rcode, answers, failure = judge(_answer("x.example.vn.", "A", rcode, []), "A")
    assert (got_rcode, answers) == (text, 0)
    assert (
        failure is not None and failure[0] == "dns" and words in failure[1] and text in failure[1]
    )


def test_resolver_addresses() -> None:
    assert resolver_address("198.18.0.53") == ("198.18.0.53", 53)
    assert resolver_address("198.18.0.53:5353") == ("198.18.0.53", 5353)
    assert resolver_address("2001:db8::53") == ("2001:db8::53", 53)
    assert resolver_address("[2001:db8::53]:5353") == ("2001:db8::53", 5353)
    with pytest.raises(ValueError, match=r"resolver 'dns\.google:53'"):
        resolver_address("dns.google:53")


def test_system_resolver_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# written by the router\nsearch lan\nnameserver 192.168.1.1\nnameserver 1.1.1.1\n"
    )
    assert system_resolver(conf) == "192.168.1.1"
    conf.write_text("search lan\n")
    with pytest.raises(ValueError, match="no nameserver"):
        system_resolver(conf)


def test_options_accept_one_or_many_and_refuse_unknown() -> None:
    opts = parse_options({"resolvers": "198.18.0.53", "qtypes": "AAAA"})
    assert opts.resolvers == ["198.18.0.53"] and opts.qtypes == ["AAAA"]
    assert parse_options({}).resolvers == ["system"] and parse_options({}).qtypes == ["A", "AAAA"]
    with pytest.raises(ValueError, match="qtypes"):
        parse_options({"qtypes": "MX"})
    with pytest.raises(ValueError, match="resolver"):
        parse_options({"resolvers": ["not-an-ip"]})
    with pytest.raises(ValueError, match="count"):
        parse_options({"count": 3})
