"""Which IP addresses are on the public internet: the one rule partner webhooks obey
(outbox/public_only.py applies it at registration and before every connection).

Pure: a string in, a reason or None out. The rule is a table written here rather than
`ipaddress`'s `is_global`, for two reasons. `is_global` does not look inside the IPv6 forms
that carry an IPv4 address: `::127.0.0.1`, `64:ff9b::7f00:1` (NAT64) and `2002:7f00:1::1`
(6to4) all passed as public, though a host that routes them reaches 127.0.0.1. And its answers
have changed between Python releases (gh-113171), while what our workers may reach must not
change with an interpreter upgrade.

IPv6 is an allow-list: only global unicast (`2000::/3`) can be public, so site-local, unique-local,
link-local, multicast, discard-only and whatever IANA assigns outside `2000::/3` later are
refused without being named one by one. The three forms that embed an IPv4 address are judged
by that address, with the same rules as plain IPv4.
"""

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

# IANA's special-purpose IPv4 registry, every block not reachable on the internet, plus the
# anycast ones no partner's server lives at (192.0.0.0/24, the 6to4 relays).
_IPV4 = [
    (IPv4Network("0.0.0.0/8"), "an address of 'this network' (0.0.0.0/8)"),
    (IPv4Network("10.0.0.0/8"), "a private address"),
    (IPv4Network("100.64.0.0/10"), "a carrier-grade NAT address (100.64.0.0/10)"),
    (IPv4Network("127.0.0.0/8"), "a loopback address"),
    (IPv4Network("169.254.0.0/16"), "a link-local address (cloud metadata services)"),
    (IPv4Network("172.16.0.0/12"), "a private address"),
    (IPv4Network("192.0.0.0/24"), "an IETF protocol address (192.0.0.0/24)"),
    (IPv4Network("192.0.2.0/24"), "a documentation address"),
    (IPv4Network("192.88.99.0/24"), "a 6to4 relay anycast address"),
    (IPv4Network("192.168.0.0/16"), "a private address"),
    (IPv4Network("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"),
    (IPv4Network("198.51.100.0/24"), "a documentation address"),
    (IPv4Network("203.0.113.0/24"), "a documentation address"),
    (IPv4Network("224.0.0.0/4"), "a multicast address"),
    (IPv4Network("255.255.255.255/32"), "the broadcast address"),
    (IPv4Network("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"),
]

_MAPPED = IPv6Network("::ffff:0:0/96")
_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")
_GLOBAL_UNICAST = IPv6Network("2000::/3")

# Refused outright, first match wins (inside 2000::/3, or outside it with a clearer name).
_IPV6 = [
    (IPv6Network("::/128"), "the unspecified address"),
    (IPv6Network("::1/128"), "a loopback address"),
    # RFC 8215: the operator places the IPv4 address anywhere in it, and the translator is a
    # local one by definition, inside the network that deploys it.
    (IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)"),
    # Teredo carries two IPv4 addresses (its server's, and its client's bit-inverted) and goes
    # through whichever relay is nearest, maybe one of our network's: checking both would not
    # bound where the packets go, and Teredo numbers NAT-ed clients, never a partner's server.
    (IPv6Network("2001::/32"), "a Teredo address (2001::/32)"),
    (IPv6Network("2001::/23"), "an IETF protocol address (2001::/23: benchmarking, ORCHID...)"),
    (IPv6Network("2001:db8::/32"), "a documentation address"),
    (IPv6Network("3fff::/20"), "a documentation address"),
    (IPv6Network("fc00::/7"), "a unique-local address (fc00::/7)"),
    (IPv6Network("fe80::/10"), "a link-local address"),
    (IPv6Network("fec0::/10"), "a site-local address (fec0::/10)"),
    (IPv6Network("ff00::/8"), "a multicast address"),
]


def not_public_because(address: str) -> str | None:
    """Why `address` is not a unicast address of the public internet, or None when it is.
    Raises ValueError when it is not an IP address at all (a host name)."""
    ip = ip_address(address.split("%", 1)[0])  # an IPv6 zone index is not part of it
    if isinstance(ip, IPv4Address):
        return _ipv4_refusal(ip)
    return _ipv6_refusal(ip)


def is_public(address: str) -> bool:
    return not_public_because(address) is None


def _ipv4_refusal(ip: IPv4Address) -> str | None:
    for network, reason in _IPV4:
        if ip in network:
            return reason
    return None


def _embedded(form: str, ip: IPv4Address) -> str | None:
    refusal = _ipv4_refusal(ip)
    return f"{form} embedding {ip}, {refusal}" if refusal else None


def _ipv6_refusal(ip: IPv6Address) -> str | None:
    for network, reason in _IPV6:
        if ip in network:
            return reason
    low32 = IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED:
        return _embedded("an IPv4-mapped IPv6 address", low32)
    if ip in _COMPATIBLE:
        return _embedded("an IPv4-compatible IPv6 address", low32)
    if ip in _NAT64:
        return _embedded("a NAT64 address", low32)
    if ip in _SIX_TO_FOUR:
        return _embedded("a 6to4 address", IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
    if ip not in _GLOBAL_UNICAST:
        return "not a global unicast address (outside 2000::/3)"
    return None
