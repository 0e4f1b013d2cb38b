"""Image references, the SSRF guard and the image fetcher (clipforge.inputs.fetch)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from clipforge.core.errors import InvalidInput
from clipforge.inputs.fetch import (
    ImageFetcher,
    check_public_url,
    check_public_url_async,
    is_public_address,
    load_image,
    parse_image_ref,
)
from clipforge.inputs.images import check_image_bytes
from inputs.conftest import LocalServer
from inputs.inputs_helpers import make_image

PUBLIC_IP = "93.184.215.14"


def refused(call: Callable[[], object], rule: str, field: str = "image_url") -> str:
    with pytest.raises(InvalidInput) as info:
        result = call()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    assert info.value.rule == rule, info.value.message
    assert info.value.field == field and info.value.message.startswith(f"{field}: ")
    return info.value.message


def fake_dns(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]
    return resolve


# --- references -------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://example.com/a.png", "https://example.com/a.png?x=1", "HTTPS://X.IO/a"])
def test_parse_urls(url: str) -> None:
    assert parse_image_ref(f"  {url}\n", "image_url") == ("url", url)


def test_parse_data_uri_and_bare_base64(images: dict[str, bytes]) -> None:
    data = images["png"]
    b64 = base64.b64encode(data).decode()
    assert parse_image_ref(f"data:image/png;base64,{b64}", "image_url") == ("bytes", data)
    assert parse_image_ref(f"data:image/png;name=a.png;base64,{b64}", "image_url") == ("bytes", data)
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    assert parse_image_ref(wrapped, "image_url") == ("bytes", data)
    assert parse_image_ref(b64.rstrip("="), "image_url") == ("bytes", data)
    assert parse_image_ref(base64.urlsafe_b64encode(data).decode(), "image_url") == ("bytes", data)


@pytest.mark.parametrize("ref,rule", [
    ("", "image_ref"),
    ("   \n", "image_ref"),
    ("file:///etc/passwd", "url_scheme"),
    ("ftp://example.com/a.png", "url_scheme"),
    ("gopher://example.com:70/_x", "url_scheme"),
    ("javascript:alert(1)", "url_scheme"),
    ("data:text/plain;base64,aGVsbG8=", "image_data_uri"),
    ("data:image/png,rawbytes", "image_data_uri"),
    ("data:image/png;base64,@@@not*base64", "image_base64"),
    ("www.example.com/a.png", "image_base64"),
    ("this is not base64!", "image_base64"),
    ("a", "image_base64"),
    ("====", "image_base64"),
])
def test_parse_refuses(ref: str, rule: str) -> None:
    message = refused(lambda: parse_image_ref(ref, "tail_image_url"), rule, field="tail_image_url")
    assert "tail_image_url" in message


# --- the guard --------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/a.png",
    "http://10.1.2.3/a.png",
    "http://[::ffff:127.0.0.1]/a.png",
    "http://127.0.0.1:8080/a.png",
    "http://192.168.1.10/",
    "http://172.16.5.4/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:a00:1::1]/",
    "http://2130706433/",  # 127.0.0.1 written as one decimal number
    "http://localhost/a.png",
])
def test_guard_refuses_private_addresses(url: str) -> None:
    refused(lambda: check_public_url(url, "image_url"), "url_private")


def test_refusal_does_not_reveal_what_a_name_resolves_to() -> None:
    dns = fake_dns({"localhost": ["127.0.0.1"], "db.internal": ["10.20.30.40", "fd00::7"]})
    for host in ("localhost", "db.internal"):
        message = refused(lambda h=host: check_public_url(f"http://{h}/a.png", "image_url", resolver=dns),
                          "url_private")
        assert not any(a in message for a in ("127.0.0.1", "10.20.30.40", "fd00::7")), message
        assert f"host '{host}' is not a public address" in message and "CLIPFORGE_ALLOW_PRIVATE_URLS" in message


def test_guard_allows_public_and_opt_in_private() -> None:
    assert check_public_url(f"http://{PUBLIC_IP}/a.png", "image_url").addresses == (PUBLIC_IP,)
    assert check_public_url("http://10.1.2.3/a.png", "image_url", allow_private=True).port == 80


def test_guard_refuses_when_any_address_is_private() -> None:
    dns = fake_dns({"mixed.test": [PUBLIC_IP, "10.0.0.1"], "ok.test": [PUBLIC_IP, "2606:4700::1"]})
    message = refused(lambda: check_public_url("https://mixed.test/", "image_url", resolver=dns),
                      "url_private")
    assert "10.0.0.1" not in message and "'mixed.test' is not a public address" in message
    assert "CLIPFORGE_ALLOW_PRIVATE_URLS" in message
    checked = asyncio.run(check_public_url_async("https://ok.test:8443/", "webhook_url", resolver=dns))
    assert (checked.host, checked.port, len(checked.addresses)) == ("ok.test", 8443, 2)


@pytest.mark.parametrize("url,rule", [
    ("https://user:secret@example.com/a.png", "url_credentials"),
    ("ftp://example.com/a.png", "url_scheme"),
    ("http:///nohost", "url_invalid"),
    ("https://nowhere.test/a.png", "url_unresolvable"),
])
def test_guard_refuses_bad_urls(url: str, rule: str) -> None:
    refused(lambda: check_public_url(url, "image_url", resolver=fake_dns({})), rule)


def test_an_unknown_host_is_named_in_words_not_an_errno() -> None:
    message = refused(lambda: check_public_url("https://nowhere.test/a.png", "image_url", resolver=fake_dns({})),
                      "url_unresolvable")
    assert message == "image_url: could not resolve host 'nowhere.test' (no such host name)", message


def test_is_public_address() -> None:
    assert is_public_address("8.8.8.8") and is_public_address("2606:4700::1111")
    private = ["::", "::ffff:10.0.0.1", "fe80::1%eth0", "198.18.0.1", "240.0.0.1"]
    assert not any(map(is_public_address, private))


# --- fetching over a real local socket ---------------------------------------------------------

def run_load(ref: str, fetcher: ImageFetcher, max_bytes: int = 10 * 1024 * 1024):
    return asyncio.run(load_image(ref, "image_url", fetcher, max_bytes))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_load_by_url_data_uri_and_base64(server, images: dict[str, bytes], fmt: str) -> None:
    server.serve(f"/a.{fmt}", images[fmt])
    fetcher = ImageFetcher(allow_private=True)
    b64 = base64.b64encode(images[fmt]).decode()
    for ref in (f"{server.url}/a.{fmt}", f"data:image/{fmt};base64,{b64}", b64):
        checked = run_load(ref, fetcher)
        assert (checked.format, checked.width, checked.height, checked.data) == (fmt, 320, 400, images[fmt])
    assert server.requests[0][1]["User-Agent"] == "clipforge/0.1"


def test_local_server_refused_unless_private_allowed(server, images: dict[str, bytes]) -> None:
    server.serve("/a.png", images["png"])
    refused(lambda: run_load(f"{server.url}/a.png", ImageFetcher()), "url_private")
    assert server.requests == []
    assert run_load(f"{server.url}/a.png", ImageFetcher(allow_private=True)).format == "png"


def test_redirects_are_followed_and_bounded(server, images: dict[str, bytes]) -> None:
    server.serve("/a.png", images["png"])
    server.redirect("/r1", "/r2", 301)
    server.redirect("/r2", f"{server.url}/a.png", 307)
    server.redirect("/loop", "/loop")
    fetcher = ImageFetcher(allow_private=True, max_redirects=2)
    assert run_load(f"{server.url}/r1", fetcher).data == images["png"]
    assert "more than 2 redirects" in refused(lambda: run_load(f"{server.url}/loop", fetcher), "image_fetch")


def test_http_error_status(server) -> None:
    message = refused(lambda: run_load(f"{server.url}/missing.png", ImageFetcher(allow_private=True)),
                      "image_url_status")
    assert "answered HTTP status 404" in message


def test_too_large_with_content_length(server, images: dict[str, bytes]) -> None:
    server.serve("/a.png", images["png"])
    message = refused(lambda: run_load(f"{server.url}/a.png", ImageFetcher(allow_private=True), 100),
                      "image_too_large")
    assert f"is {len(images['png'])} bytes (Content-Length)" in message


def test_too_large_streamed_without_content_length(server) -> None:
    server.endless("/endless")
    fetcher = ImageFetcher(allow_private=True, max_bytes=200_000)
    message = refused(lambda: asyncio.run(fetcher.fetch(f"{server.url}/endless", "image_url")),
                      "image_too_large")
    assert "sent more than 200000 bytes" in message



def serve_encoded(server, path: str, body: bytes, encoding: str) -> None:
    def route(h) -> None:  # noqa: ANN001
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Encoding", encoding)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    server.routes[path] = route


def test_a_compressed_body_is_capped_as_it_is_inflated(server) -> None:
    """A 1 MB gzip of 1 GB: the cap applies to what is inflated, never more than the limit at once
    (httpx inflates each 64 KiB read whole, about 66 MB, before any cap can look)."""
    import tracemalloc
    import zlib

    squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = squeezer.compress(b"\0" * (1 << 30)) + squeezer.flush()
    serve_encoded(server, "/bomb.png", bomb, "gzip")
    fetcher = ImageFetcher(allow_private=True, max_bytes=2_000_000)  # over the compressed size
    tracemalloc.start()
    try:
        message = refused(lambda: asyncio.run(fetcher.fetch(f"{server.url}/bomb.png", "image_url")),
                          "image_too_large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "sent more than 2000000 bytes" in message
    assert peak < 20_000_000, peak


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_image_still_loads(server, encoding: str) -> None:
    import gzip
    import zlib

    data = make_image("png", (320, 400))
    serve_encoded(server, "/z.png", gzip.compress(data) if encoding == "gzip" else zlib.compress(data), encoding)
    assert asyncio.run(ImageFetcher(allow_private=True).fetch(f"{server.url}/z.png", "image_url")) == data
    assert server.requests[-1][1].get("Accept-Encoding") == "identity"


def test_an_unknown_content_encoding_is_named(server) -> None:
    serve_encoded(server, "/br.png", b"\x8b\x00\x80not really brotli", "br")
    message = refused(lambda: asyncio.run(ImageFetcher(allow_private=True).fetch(f"{server.url}/br.png",
                                                                                 "image_url")), "image_fetch")
    assert "Content-Encoding 'br'" in message

def test_slow_server_times_out(server) -> None:
    server.slow("/slow", 3)
    message = refused(lambda: run_load(f"{server.url}/slow", ImageFetcher(allow_private=True, timeout=0.3)),
                      "image_fetch")
    assert message.endswith("timed out after 0.3 s")


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message = refused(lambda: run_load(f"http://127.0.0.1:{port}/a.png", ImageFetcher(allow_private=True)),
                      "image_fetch")
    assert "could not fetch" in message


def test_fetched_non_image_is_refused(server) -> None:
    server.serve("/a.png", make_image("GIF"))
    refused(lambda: run_load(f"{server.url}/a.png", ImageFetcher(allow_private=True)), "image_format")


# --- hops and pinning, with fake DNS and a mock transport --------------------------------------

class Recorder:
    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.handler(request)
        return httpx.MockTransport(handle)


def test_redirect_to_private_address_is_refused(server, images: dict[str, bytes]) -> None:
    """public.test passes the guard; its redirect to the local server must be checked and refused."""
    server.serve("/secret.png", images["png"])
    target = f"{server.url}/secret.png"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC_IP:
            return httpx.Response(302, headers={"Location": target})
        return httpx.Response(200, content=images["png"])  # stands in for the private host

    dns = fake_dns({"public.test": [PUBLIC_IP]})
    rec = Recorder(handler)
    fetcher = ImageFetcher(transport=rec.transport(), resolver=dns)
    message = refused(lambda: run_load("http://public.test/a.png", fetcher), "url_private")
    assert "127.0.0.1" in message
    assert [r.url.host for r in rec.requests] == [PUBLIC_IP] and server.requests == []
    # The same redirect is followed when private addresses are allowed: the hop check is what refused it.
    lenient = ImageFetcher(transport=rec.transport(), resolver=dns, allow_private=True)
    assert run_load("http://public.test/a.png", lenient).data == images["png"]


def test_connects_to_the_checked_address(images: dict[str, bytes]) -> None:
    """DNS rebinding: the second answer (private) is never asked for nor used."""
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])
    rec = Recorder(lambda request: httpx.Response(200, content=images["jpeg"]))
    fetcher = ImageFetcher(transport=rec.transport(), resolver=lambda host, port: next(answers))
    assert run_load("https://rebind.test:8443/a.jpg?x=1", fetcher).format == "jpeg"
    (request,) = rec.requests
    assert str(request.url) == f"https://{PUBLIC_IP}:8443/a.jpg?x=1"
    assert request.headers["Host"] == "rebind.test:8443"
    assert request.extensions["sni_hostname"] == "rebind.test"
    assert next(answers) == ["127.0.0.1"]  # resolved exactly once


def test_tries_next_checked_address_on_connect_error(images: dict[str, bytes]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC_IP:
            raise httpx.ConnectError("unreachable")
        return httpx.Response(200, content=images["webp"])

    rec = Recorder(handler)
    dns = fake_dns({"two.test": [PUBLIC_IP, "2606:4700::1"]})
    fetcher = ImageFetcher(transport=rec.transport(), resolver=dns)
    assert run_load("http://two.test/a", fetcher).format == "webp"
    assert [r.url.host for r in rec.requests] == [PUBLIC_IP, "2606:4700::1"]
    assert rec.requests[1].headers["Host"] == "two.test"


def test_total_timeout_bounds_a_stalled_transport() -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    fetcher = ImageFetcher(transport=httpx.MockTransport(stall), resolver=fake_dns({"p.test": [PUBLIC_IP]}),
                           timeout=0.2)
    message = refused(lambda: run_load("http://p.test/a.png", fetcher), "image_fetch")
    assert message == "image_url: could not fetch http://p.test/a.png: timed out after 0.2 s"


def test_credentials_in_url_refused_before_any_request() -> None:
    rec = Recorder(lambda request: httpx.Response(200))
    fetcher = ImageFetcher(transport=rec.transport(), resolver=fake_dns({"p.test": [PUBLIC_IP]}))
    refused(lambda: run_load("https://u:p@p.test/a.png", fetcher), "url_credentials")
    assert rec.requests == []


def test_redirect_to_invalid_url_and_bad_port() -> None:
    rec = Recorder(lambda request: httpx.Response(302, headers={"Location": "http://[::1"}))
    fetcher = ImageFetcher(transport=rec.transport(), resolver=fake_dns({"p.test": [PUBLIC_IP]}))
    assert "location" in refused(lambda: run_load("http://p.test/a", fetcher), "image_fetch").lower()
    refused(lambda: run_load("http://p.test:99999/a", fetcher), "url_invalid")


@pytest.fixture
def tls_server(tmp_path, images: dict[str, bytes]):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for pinned.test only."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=pinned.test",
                    "-addext", "subjectAltName=DNS:pinned.test"], check=True, capture_output=True)
    server = LocalServer()
    server.serve("/a.png", images["png"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sni: list[str] = []
    ctx.sni_callback = lambda sock, name, context: sni.append(name)
    server.httpd.socket = ctx.wrap_socket(server.httpd.socket, server_side=True)
    server.thread.start()
    yield server, ssl.create_default_context(cafile=str(cert)), sni
    server.httpd.shutdown()
    server.httpd.server_close()


def test_https_pinned_to_checked_address_keeps_name_for_tls(tls_server, images: dict[str, bytes]) -> None:
    server, client_ctx, sni = tls_server
    port = server.httpd.server_address[1]
    dns = fake_dns({"pinned.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    fetcher = ImageFetcher(allow_private=True, resolver=dns, ssl_context=client_ctx)
    assert run_load(f"https://pinned.test:{port}/a.png", fetcher).data == images["png"]
    assert sni == ["pinned.test"] and server.requests[0][1]["Host"] == f"pinned.test:{port}"
    message = refused(lambda: run_load(f"https://other.test:{port}/a.png", fetcher), "image_fetch")
    assert "certificate" in message.lower()


def test_hanging_lookups_hold_neither_image_checks_nor_other_lookups():
    """Eight URLs whose name server never answers, on a loop whose default pool has 4 threads (a small
    machine's): another host still resolves and an image is still checked at once, and a lookup past
    its timeout is refused naming the field."""
    release = threading.Event()

    def dns(host: str, port: int) -> list[str]:
        if host.startswith("hang"):
            release.wait(30)
        return [PUBLIC_IP]

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(4))
        hung = [asyncio.create_task(check_public_url_async(f"https://hang{i}.test/a.png", "image_url",
                                                           resolver=dns)) for i in range(8)]
        try:
            await asyncio.sleep(0.2)
            checked = await asyncio.wait_for(check_public_url_async("https://ok.test/", "image_url",
                                                                    resolver=dns), 5)
            assert checked.addresses == (PUBLIC_IP,)
            image = await asyncio.wait_for(asyncio.to_thread(check_image_bytes, make_image("png", (640, 480)),
                                                             "image"), 5)
            assert (image.width, image.height) == (640, 480)
            with pytest.raises(InvalidInput) as info:
                await check_public_url_async("https://hang-late.test/", "webhook_url", resolver=dns, timeout=0.3)
            assert info.value.field == "webhook_url" and info.value.rule == "url_unresolvable"
            assert "took over 0.3 s" in info.value.message
        finally:
            release.set()
            await asyncio.gather(*hung)

    asyncio.run(main())
