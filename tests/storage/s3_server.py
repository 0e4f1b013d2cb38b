"""A local S3-compatible server for tests: moto's server mode behind a front that checks presigned URLs.

moto serves the S3 API but neither checks signatures nor expiry, so a front (a small threaded HTTP
proxy) checks every presigned GET (`X-Amz-Signature` in the query) the way S3 does: SigV4 signature
over the method, path, query and host with the known secret, and `X-Amz-Date + X-Amz-Expires` not
past; a failure is S3's 403 `AccessDenied` XML. Everything else is passed to moto as is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote

import httpx

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
              "expect"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def presign_problem(method: str, raw_path: str, host: str, secret: str, now: dt.datetime) -> str | None:
    """Why S3 would refuse this presigned request, or None when it is valid."""
    path, _, query = raw_path.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    given = dict(params)
    try:
        signed_at = dt.datetime.strptime(given["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        expires = int(given["X-Amz-Expires"])
        scope = given["X-Amz-Credential"].split("/", 1)[1]
    except (KeyError, ValueError, IndexError):
        return "AuthorizationQueryParametersError"
    if now > signed_at + dt.timedelta(seconds=expires):
        return "Request has expired"
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                               for k, v in sorted(params) if k != "X-Amz-Signature")
    canonical = "\n".join([method, path, canonical_query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", given["X-Amz-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.get("X-Amz-Signature", "")):
        return "SignatureDoesNotMatch"
    return None


class S3Server:
    """`with S3Server() as s3:` ... `s3.endpoint_url` speaks S3 (moto) and enforces presigned URLs."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.moto_port, self.port = free_port(), free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self._front: ThreadingHTTPServer | None = None
        self.refused: list[str] = []

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def __enter__(self) -> S3Server:
        self._moto.start()
        upstream = httpx.Client(base_url=f"http://127.0.0.1:{self.moto_port}", timeout=30)
        server = self

        class Front(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered at once

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                if "X-Amz-Signature=" in self.path:
                    problem = presign_problem(self.command, self.path, self.headers.get("Host", ""), SECRET_KEY,
                                              dt.datetime.now(dt.UTC))
                    if problem:
                        server.refused.append(problem)
                        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                                f"<Message>{problem}</Message></Error>").encode()
                        self.send_response(403)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                reply = upstream.request(self.command, self.path, headers=headers, content=body)
                self.send_response(reply.status_code)
                for k, v in reply.headers.items():
                    if k.lower() not in HOP_BY_HOP | {"content-length", "content-encoding", "server", "date"}:
                        self.send_header(k, v)
                length = reply.headers.get("content-length", "0") if self.command == "HEAD" else len(reply.content)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._front = ThreadingHTTPServer(("127.0.0.1", self.port), Front)
        self._front.daemon_threads = True
        threading.Thread(target=self._front.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._front is not None:
            self._front.shutdown()
            self._front.server_close()
        self._moto.stop()
