"""Where step 4 goes next: the next-hop SMTP servers for a recipient domain.

RFC 5321 5.1, in this order:
1. the config's static route table (``"bob.lab" = "bob-mta:25"``; ``"*"`` routes every other
   domain, a smarthost);
2. DNS MX records, lowest preference first (equal preferences in random order), each exchange
   resolved to its A/AAAA addresses;
3. no MX records: the domain's own A/AAAA addresses (the "implicit MX").

A null MX (RFC 7505, ``MX 0 .``) and NXDOMAIN are permanent failures (the message bounces at
once); timeouts, SERVFAIL and other resolver trouble are temporary (it is retried).
``relay.nameservers`` points the resolver at given servers (``ip`` or ``ip:port``), e.g. a
local dnsmasq in tests; hosts found by DNS are contacted on ``relay.port`` (25).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from mta.config import Config, ConfigError, parse_hostport

log = logging.getLogger("labmail.routing")


@dataclass(frozen=True)
class Hop:
    """One SMTP server to try: ``host`` is what to connect to, ``name`` what to report."""

    host: str
    port: int
    name: str
    preference: int = 0

    def __str__(self) -> str:
        return self.name if self.name == self.host else f"{self.name}[{self.host}]:{self.port}"


@dataclass(frozen=True)
class Route:
    """A routing decision: the hops in order, how they were found (``static``, ``mx`` or ``a``,
    the implicit MX) and what the table or DNS answered, as the relay publishes it."""

    hops: list[Hop]
    how: str
    answer: tuple[str, ...]


class RouteError(Exception):
    """No next hop: ``permanent`` decides between bounce and retry; ``status`` is RFC 3463."""

    def __init__(self, permanent: bool, status: str, text: str) -> None:
        super().__init__(text)
        self.permanent = permanent
        self.status = status
        self.text = text


def make_resolver(config: Config) -> dns.asyncresolver.Resolver:
    """dnspython's asyncio resolver, configured by ``relay.nameservers`` or the system."""
    relay = config.relay
    if relay.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        servers: list[dns.nameserver.Nameserver] = []
        for item in relay.nameservers:
            host, port = _nameserver(item, config.source)
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        resolver.nameservers = servers
    else:
        resolver = dns.asyncresolver.Resolver(configure=True)
    resolver.timeout = relay.dns_timeout
    resolver.lifetime = relay.dns_timeout
    return resolver


def _nameserver(item: str, source: str) -> tuple[str, int]:
    try:
        ipaddress.ip_address(item.strip("[]"))
        return item.strip("[]"), 53
    except ValueError:
        pass
    host, port = parse_hostport(item, f"{source}: 'relay.nameservers'")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{source}: 'relay.nameservers' needs IP addresses, got {item!r}"
                          ) from None
    return host, port


class Router:
    """Finds the next hops for a domain; one Router per relay worker."""

    def __init__(self, config: Config, resolver: dns.asyncresolver.Resolver | None = None
                 ) -> None:
        self.config = config
        self._resolver = resolver

    @property
    def resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            try:
                self._resolver = make_resolver(self.config)
            except dns.resolver.NoResolverConfiguration:
                raise RouteError(False, "4.4.3", "no DNS resolver configured") from None
        return self._resolver

    async def route(self, domain: str) -> list[Hop]:
        """The hops to try, in order; raises RouteError when there is none."""
        return (await self.decide(domain)).hops

    async def decide(self, domain: str) -> Route:
        """The hops to try and how they were found; raises RouteError when there is none."""
        domain = domain.lower().rstrip(".")
        static = self.config.routes.get(domain) or self.config.routes.get("*")
        if static:
            host, port = static
            return Route([Hop(host, port, host)], "static", (f"{host}:{port}",))
        if domain.startswith("["):  # an address literal, RFC 5321 4.1.3
            address = domain.strip("[]").removeprefix("IPv6:")
            return Route([Hop(address, self.config.relay.port, domain)], "a", (address,))
        records = await self._mx(domain)
        if not records:  # RFC 5321 5.1: no MX, the domain itself is the implicit MX
            addresses, temporary = await self._addresses(domain)
            if not addresses:
                if temporary:
                    raise RouteError(False, "4.4.3", f"{domain}: address lookup failed")
                raise RouteError(True, "5.1.2", f"{domain}: no MX or address records")
            return Route([Hop(a, self.config.relay.port, domain) for a in addresses], "a",
                         tuple(addresses))
        hops: list[Hop] = []
        temporary = False
        for preference, exchange in records:
            addresses, temp = await self._addresses(exchange)
            temporary |= temp
            hops += [Hop(a, self.config.relay.port, exchange, preference) for a in addresses]
        if not hops:
            if temporary:
                raise RouteError(False, "4.4.3", f"{domain}: MX host address lookup failed")
            raise RouteError(True, "5.4.4", f"{domain}: no address for any MX host")
        return Route(hops, "mx", tuple(f"{p} {x}" for p, x in records))

    async def _mx(self, domain: str) -> list[tuple[int, str]]:
        try:
            answer = await self.resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            raise RouteError(True, "5.1.2", f"{domain}: no such domain (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.Timeout:
            raise RouteError(False, "4.4.3", f"{domain}: DNS timeout looking up MX") from None
        except dns.resolver.NoNameservers:
            raise RouteError(False, "4.4.3",
                             f"{domain}: DNS failure looking up MX (SERVFAIL)") from None
        except dns.exception.DNSException as exc:
            raise RouteError(False, "4.4.3", f"{domain}: DNS error: {exc}") from None
        records = [(r.preference, r.exchange) for r in answer]
        real = [(p, x.to_text(omit_final_dot=True).lower()) for p, x in records
                if x != dns.name.root]
        if not real:  # RFC 7505 3: "MX 0 ." says the domain accepts no mail
            raise RouteError(True, "5.1.10", f"{domain}: the domain accepts no mail (null MX)")
        random.shuffle(real)  # RFC 5321 5.1: equal preferences in random order
        return sorted(real, key=lambda r: r[0])

    async def _addresses(self, host: str) -> tuple[list[str], bool]:
        """(IPv4 then IPv6 addresses of ``host``, whether a lookup failed temporarily)."""
        try:
            ipaddress.ip_address(host)
            return [host], False
        except ValueError:
            pass
        found: list[str] = []
        temporary = False
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                log.info("address lookup %s %s failed: %s", host, rdtype, exc)
                temporary = True
                continue
            found += [r.address for r in answer]
        return found, temporary
