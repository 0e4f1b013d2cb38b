"""Turning an image reference into bytes, safely.

This module owns the three forms an image field may take (an http(s) URL, a
`data:image/...;base64,...` URI, bare base64), the guard that keeps server-side requests off
private networks (reused for webhook URLs), and the HTTP fetcher for image URLs.

SSRF policy (`check_public_url`): only http and https; no credentials in the URL (they would be
stored with the job and sent to whoever answers); the host is resolved and refused if ANY address
is not public (loopback, RFC 1918, CGNAT, link-local and cloud metadata, ULA, multicast, reserved,
unspecified, and such addresses embedded in IPv6: IPv4-mapped, 6to4, Teredo, NAT64). With
`allow_private=True` (a deployment setting for hosts fetching from their own LAN) only the scheme
and credential rules apply.

DNS rebinding: `ImageFetcher` resolves each hop once, checks every address, then connects to the
checked address itself (the URL's host is kept in the Host header and in TLS SNI / certificate
checks), so a second, different DNS answer is never used. Environment proxies are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import certifi
import httpx

from clipforge.core.errors import InvalidInput
from clipforge.inputs.images import MAX_IMAGE_BYTES, CheckedImage, check_image_bytes

Resolver = Callable[[str, int], list[str]]
"""Maps (host, port) to IP address strings; raises OSError when the name does not resolve."""

USER_AGENT = "clipforge/0.1"
REDIRECT_CODES = {301, 302, 303, 307, 308}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_DATA_URI = re.compile(r"^data:(image/[A-Za-z0-9.+-]+)((?:;[^,;]*)*?);base64,(.*)$",
                       re.DOTALL | re.IGNORECASE)
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=_-]*$")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


# --- references -------------------------------------------------------------------------------

def parse_image_ref(ref: str, field: str) -> tuple[str, bytes | str]:
    """Classify an image field: ("url", url) for http(s), ("bytes", data) for a data URI or bare base64."""
    value = ref.strip() if isinstance(ref, str) else ""
    if not value:
        raise InvalidInput(field, f"{field}: is empty; expected an http(s) URL, a data:image/...;base64 URI "
                           "or base64 image data", "image_ref")
    match = _SCHEME.match(value)
    if match is None:
        return "bytes", _decode_base64(value, field, "base64 image data")
    scheme = match.group(1).lower()
    if scheme in ("http", "https"):
        return "url", value
    if scheme == "data":
        return "bytes", _parse_data_uri(value, field)
    raise InvalidInput(field, f"{field}: URL scheme '{scheme}:' is not allowed; use http(s)://, "
                       "a data:image/...;base64 URI or base64 image data", "url_scheme")


def _parse_data_uri(value: str, field: str) -> bytes:
    match = _DATA_URI.match(value)
    if match is None:
        raise InvalidInput(field, f"{field}: data URI must have the form data:image/<type>;base64,<data> "
                           f"(got '{value[:40]}...')", "image_data_uri")
    return _decode_base64(match.group(3), field, "data URI payload")


def _decode_base64(text: str, field: str, what: str) -> bytes:
    compact = "".join(text.split())
    if not _BASE64_CHARS.match(compact):
        raise InvalidInput(field, f"{field}: {what} is not valid base64 (it contains characters "
                           "outside A-Z a-z 0-9 + / =); expected an http(s) URL, a data URI or base64",
                           "image_base64")
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    compact = compact.rstrip("=")
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(field, f"{field}: {what} is not valid base64 ({exc})", "image_base64") from exc
    if not data:
        raise InvalidInput(field, f"{field}: {what} decodes to no bytes", "image_base64")
    return data


# --- the SSRF guard ---------------------------------------------------------------------------

def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (blocking; run it in a thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """True when a server may connect to this IP literal without reaching a private network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(str(embedded))
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_private or ip.is_loopback
                                 or ip.is_link_local or ip.is_unspecified)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the guard, with the addresses its host resolved to (all of them allowed)."""

    url: httpx.URL
    host: str
    port: int
    addresses: tuple[str, ...]


PRIVATE_URLS_SETTING = "CLIPFORGE_ALLOW_PRIVATE_URLS=1 (--allow-private-urls)"


def private_address_message(field: str, host: str) -> str:
    """The refusal of a non-public host. It never names the address the host resolved to: that
    would let a caller map internal DNS through error messages."""
    return (f"{field}: host '{host}' is not a public address (private, loopback, link-local or reserved); "
            f"only public addresses may be fetched unless the server's operator sets {PRIVATE_URLS_SETTING}")


# getaddrinfo's error numbers in words: a caller reads "not found", not "[Errno -2]"
_LOOKUP_WORDS = {
    socket.EAI_NONAME: "no such host name",
    socket.EAI_AGAIN: "DNS did not answer; try again",
    getattr(socket, "EAI_NODATA", -5): "the host name has no address",
}


def _lookup_words(exc: OSError | UnicodeError) -> str:
    if isinstance(exc, OSError) and exc.errno in _LOOKUP_WORDS:
        return _LOOKUP_WORDS[exc.errno]
    return re.sub(r"\[Errno -?\d+\]\s*", "", str(exc)) or type(exc).__name__


def check_public_url(url: str, field: str, allow_private: bool = False,
                     resolver: Resolver = system_resolver) -> CheckedUrl:
    """Refuse (InvalidInput) a URL a server must not request; blocking, it resolves the host."""
    parsed, host, port = _split_url(url, field)
    try:
        addresses = (host,) if _is_ip_literal(host) else tuple(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(field, f"{field}: could not resolve host '{host}' ({_lookup_words(exc)})",
                           "url_unresolvable") from exc
    if not addresses:
        raise InvalidInput(field, f"{field}: host '{host}' has no address", "url_unresolvable")
    if not allow_private:
        bad = [a for a in addresses if not is_public_address(a)]
        if bad:
            raise InvalidInput(field, private_address_message(field, host), "url_private")
    return CheckedUrl(parsed, host, port, addresses)


# Lookups run in a pool of their own. A name server that never answers (an attacker's) holds a thread
# until the system resolver gives up, tens of seconds later; in the event loop's default pool (6 threads
# on a 2-core machine, shared with image checks) a handful of such URLs stalled every caller's images.
DNS_THREADS = 32
LOOKUP_SECONDS = 10.0  # a lookup slower than this is refused (the thread runs on until the resolver gives up)
_dns_pool = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="clipforge-dns")


async def check_public_url_async(url: str, field: str, allow_private: bool = False,
                                 resolver: Resolver = system_resolver,
                                 timeout: float = LOOKUP_SECONDS) -> CheckedUrl:
    """`check_public_url` with DNS resolution in the lookup pool, refused naming `field` when it
    takes over `timeout` seconds."""
    call = functools.partial(check_public_url, url, field, allow_private, resolver)
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.get_running_loop().run_in_executor(_dns_pool, call)
    except TimeoutError:
        raise InvalidInput(field, f"{field}: looking up the host of {_short(url)} took over {timeout:g} s",
                           "url_unresolvable") from None


def _split_url(url: str, field: str) -> tuple[httpx.URL, str, int]:
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise InvalidInput(field, f"{field}: '{_short(url)}' is not a valid URL ({exc})",
                           "url_invalid") from exc
    if parsed.scheme not in ("http", "https"):
        raise InvalidInput(field, f"{field}: URL scheme '{parsed.scheme}:' is not allowed; use http or https",
                           "url_scheme")
    if not host:
        raise InvalidInput(field, f"{field}: URL '{_short(url)}' has no host", "url_invalid")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidInput(field, f"{field}: URL port {parsed.port} is out of range", "url_invalid")
    if parsed.userinfo:
        raise InvalidInput(field, f"{field}: URL must not contain a user name or password", "url_credentials")
    return parsed, host, parsed.port or (443 if parsed.scheme == "https" else 80)


def _short(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


# --- fetching ---------------------------------------------------------------------------------

class ImageFetcher:
    """Fetches image URLs for the api: guarded on every redirect hop, pinned to checked addresses,
    bounded in time (`timeout` for connect, each read, and the whole fetch) and in size.

    Build one per process and share it; it holds no connections between fetches (each hop gets
    its own connection, so a TLS session made for one host name is never reused for another).
    `transport` replaces the network (tests); `resolver` replaces DNS (tests); `ssl_context` replaces
    the default trust store (certifi's CA bundle).
    """

    def __init__(self, *, allow_private: bool = False, timeout: float = 15.0,
                 max_bytes: int = MAX_IMAGE_BYTES, max_redirects: int = 5,
                 transport: httpx.AsyncBaseTransport | None = None,
                 resolver: Resolver = system_resolver, ssl_context: ssl.SSLContext | None = None) -> None:
        self.allow_private, self.timeout, self.max_bytes = allow_private, timeout, max_bytes
        self.max_redirects, self.resolver, self._transport = max_redirects, resolver, transport
        self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())

    async def fetch(self, url: str, field: str, max_bytes: int | None = None) -> bytes:
        """The body of url (after redirects); InvalidInput naming `field` for every failure."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        current = url
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(self.max_redirects + 1):
                    result = await self._hop(current, field, limit)
                    if isinstance(result, bytes):
                        return result
                    current = result
        except TimeoutError as exc:
            raise InvalidInput(field, f"{field}: could not fetch {_short(url)}: timed out after "
                               f"{self.timeout:g} s", "image_fetch") from exc
        raise InvalidInput(field, f"{field}: could not fetch {_short(url)}: more than {self.max_redirects} "
                           "redirects", "image_fetch")

    async def _hop(self, url: str, field: str, limit: int) -> bytes | str:
        """One request: the body, or the next URL when the answer is a redirect."""
        checked = await check_public_url_async(url, field, self.allow_private, self.resolver)
        last_error: httpx.TransportError | None = None
        for address in checked.addresses:
            try:
                return await self._request(checked, address, field, limit)
            except httpx.ConnectError as exc:  # try the host's next checked address
                last_error = exc
            except httpx.TimeoutException as exc:
                raise TimeoutError from exc
            except httpx.HTTPError as exc:
                raise _fetch_error(field, url, exc) from exc
        assert last_error is not None
        raise _fetch_error(field, url, last_error) from last_error

    async def _request(self, checked: CheckedUrl, address: str, field: str, limit: int) -> bytes | str:
        request = pinned_request(checked, address)
        client = httpx.AsyncClient(transport=self._transport or self._new_transport(), trust_env=False,
                                   follow_redirects=False, timeout=httpx.Timeout(self.timeout))
        try:
            response = await client.send(request, stream=True)
            try:
                return await self._read(response, checked, field, limit)
            finally:
                await response.aclose()
        finally:
            if self._transport is None:
                await client.aclose()

    def _new_transport(self) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False, retries=0)

    async def _read(self, response: httpx.Response, checked: CheckedUrl, field: str,
                    limit: int) -> bytes | str:
        url = str(checked.url)
        if response.status_code in REDIRECT_CODES:
            location = response.headers.get("location")
            if not location:
                raise InvalidInput(field, f"{field}: {_short(url)} answered HTTP {response.status_code} "
                                   "without a Location header", "image_fetch")
            try:
                return str(checked.url.join(location))
            except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
                raise InvalidInput(field, f"{field}: {_short(url)} redirected to an invalid URL "
                                   f"'{_short(location)}'", "image_fetch") from exc
        if not 200 <= response.status_code < 300:
            raise InvalidInput(field, f"{field}: {_short(url)} answered HTTP status {response.status_code}; "
                               "expected 200", "image_url_status")
        _check_length_header(response, url, field, limit)
        return await _read_capped(response, url, field, limit)


def pinned_request(checked: CheckedUrl, address: str) -> httpx.Request:
    """A GET to the checked address itself, carrying the URL's host name for Host and TLS."""
    headers = {"User-Agent": USER_AGENT, "Accept": "image/jpeg, image/png, image/webp, */*;q=0.5",
               "Accept-Encoding": "identity"}
    extensions: dict[str, str] = {}
    target = checked.url
    if not _is_ip_literal(checked.host):
        target = checked.url.copy_with(host=address)
        default_port = checked.url.port is None
        headers["Host"] = checked.host if default_port else f"{checked.host}:{checked.port}"
        extensions["sni_hostname"] = checked.host
    return httpx.Request("GET", target, headers=headers, extensions=extensions)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_length_header(response: httpx.Response, url: str, field: str, limit: int) -> None:
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(field, url, f"is {int(length)} bytes (Content-Length)", limit)


async def _read_capped(response: httpx.Response, url: str, field: str, limit: int) -> bytes:
    """The body, at most `limit` bytes. A gzip or deflate body (sent although identity was asked for)
    is inflated here, never past the limit: httpx would inflate each read whole first (a 64 KiB read
    of a gzip bomb is 66 MB)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    inflater = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or zlib header, told apart by itself
    elif encoding not in ("", "identity"):
        raise InvalidInput(field, f"{field}: {_short(url)} answered with Content-Encoding {encoding!r}; "
                           "serve the image uncompressed (or gzip)", "image_fetch")
    body = bytearray()
    # Raw bytes when they are to be inflated here; otherwise aiter_bytes (no decoder then: identity).
    chunks = response.aiter_raw() if inflater is not None else response.aiter_bytes()
    async for chunk in chunks:
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, limit + 1 - len(body))
            except zlib.error as exc:
                raise InvalidInput(field, f"{field}: {_short(url)} sent a {encoding} body that does not "
                                   f"inflate ({exc})", "image_fetch") from exc
            if inflater.unconsumed_tail:  # more would come out than the limit leaves room for
                raise _too_large(field, url, f"sent more than {limit} bytes", limit)
        body += chunk
        if len(body) > limit:
            raise _too_large(field, url, f"sent more than {limit} bytes", limit)
    return bytes(body)


def _too_large(field: str, url: str, what: str, limit: int) -> InvalidInput:
    return InvalidInput(field, f"{field}: image at {_short(url)} {what}; images must be at most {limit} "
                        f"bytes ({limit / 1024 / 1024:g} MB)", "image_too_large")


def _fetch_error(field: str, url: str, exc: Exception) -> InvalidInput:
    reason = str(exc) or type(exc).__name__
    return InvalidInput(field, f"{field}: could not fetch {_short(url)}: {reason}", "image_fetch")


async def load_image(ref: str, field: str, fetcher: ImageFetcher,
                     max_bytes: int = MAX_IMAGE_BYTES) -> CheckedImage:
    """Parse an image field, fetch it when it is a URL, and check it; InvalidInput on any failure."""
    kind, value = parse_image_ref(ref, field)
    if kind == "url":
        assert isinstance(value, str)
        data = await fetcher.fetch(value, field, max_bytes)
    else:
        assert isinstance(value, bytes)
        data = value
    return await asyncio.to_thread(check_image_bytes, data, field, max_bytes)
