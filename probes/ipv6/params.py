"""IPv6 protocol constants, with units and their sources (one place, like ndt7's params.go)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Network
from typing import Final

# -- RFC 7050 / RFC 6052: NAT64 prefix discovery ---------------------------------------------------
#: The well-known IPv4-only name whose AAAA a DNS64 synthesizes (RFC 7050 §2; RFC 8880).
IPV4ONLY_ARPA: Final = "ipv4only.arpa."
#: Its two A records, the well-known IPv4 addresses (WKAs) searched for in the AAAA answer
#: (RFC 7050 §2; IANA IPv4 special-purpose registry, "NAT64/DNS64 Discovery").
WKA_PRIMARY: Final = IPv4Address("192.0.0.170")
WKA_SECONDARY: Final = IPv4Address("192.0.0.171")
#: The well-known NAT64 prefix (RFC 6052 §2.1).
WELL_KNOWN_NAT64_PREFIX: Final = IPv6Network("64:ff9b::/96")
#: Prefix lengths at which an IPv4 address may be embedded (RFC 6052 §2.2).
NAT64_PREFIX_LENGTHS: Final = (32, 40, 48, 56, 64, 96)

# -- RFC 4861 / RFC 8781: Neighbor Discovery -----------------------------------------------------
ICMPV6_ECHO_REQUEST: Final = 128
ICMPV6_ECHO_REPLY: Final = 129
ICMPV6_ROUTER_SOLICITATION: Final = 133
ICMPV6_ROUTER_ADVERTISEMENT: Final = 134
#: ND messages are sent with, and only accepted at, hop limit 255 (RFC 4861 §6.1.2).
ND_HOP_LIMIT: Final = 255
ALL_ROUTERS: Final = "ff02::2"
ND_OPT_SOURCE_LINK_ADDRESS: Final = 1
ND_OPT_PREFIX_INFORMATION: Final = 3  # RFC 4861 §4.6.2
ND_OPT_MTU: Final = 5  # RFC 4861 §4.6.4
ND_OPT_RDNSS: Final = 25  # RFC 8106 §5.1
ND_OPT_PREF64: Final = 38  # RFC 8781 §4
#: PREF64 "Prefix Length Code" → prefix length (RFC 8781 §4).
PREF64_PLC_TO_LENGTH: Final = {0: 96, 1: 64, 2: 56, 3: 48, 4: 40, 5: 32}
#: PREF64 scaled lifetime unit, seconds (RFC 8781 §4).
PREF64_LIFETIME_UNIT_S: Final = 8
#: How long to listen for an RA after soliciting one: RTR_SOLICITATION_INTERVAL (RFC 4861 §10).
RA_WAIT_S: Final = 4.0

# -- test-ipv6.com (falling-sky/source templates/js/inc/init.js, symptoms.js) --------------------
#: A test counts as slow after this many seconds...
SLOW_S: Final = 5.0
#: ...and is abandoned after this many.
CHECK_TIMEOUT_S: Final = 15.0
#: Its "IPv6 large packet" test fetches a response of this size, in bytes: more than one
#: 1280-byte IPv6 packet can carry, so it needs full-size packets or working PMTUD.
LARGE_RESPONSE_MIN_BYTES: Final = 1600

# -- RFC 8305: Happy Eyeballs v2 -----------------------------------------------------------------
#: Connection Attempt Delay, seconds (RFC 8305 §5 recommends 250 ms).
HAPPY_EYEBALLS_DELAY_S: Final = 0.25

# -- this probe's own bounds ---------------------------------------------------------------------
#: Largest HTTP response head and body read by a check, bytes (the targets serve a few KiB).
MAX_HEAD_BYTES: Final = 16 * 1024
MAX_BODY_BYTES: Final = 1024 * 1024
#: ICMPv6 echo requests per target, and the wait for each reply, seconds.
ECHO_COUNT: Final = 3
ECHO_TIMEOUT_S: Final = 2.0
