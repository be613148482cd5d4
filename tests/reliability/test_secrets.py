"""Secrets: the API key never shows up in logs, XComs, rendered templates, errors (with their causes and
reprs) or requests to any host but the API; plain http is refused off loopback; TLS verification cannot
be switched off through the connection.

Operators run in-process against the emulator and moto S3 with the recognisable key ``SECRET``, through
successful and failing flows. A positive control checks that the key really was sent to the API, so the
searches below would see it if it leaked.
"""

from __future__ import annotations

import datetime
import json
import logging
import ssl
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowException
from reliability_support import (
    BUCKET,
    MIB,
    SECRET,
    T2V,
    VPS,
    FakeStore,
    Stack,
    Venice,
    connection,
    delivery_keys,
    error_chain,
    make_context,
)

from airflow_provider_venice.client import VeniceError, forget_catalogues
from airflow_provider_venice.hooks.venice import VeniceHook, register_transports
from airflow_provider_venice.operators.transcription import VeniceVideoTranscriptionOperator
from airflow_provider_venice.operators.video import (
    VeniceGenerateVideoOperator,
    VeniceVideoCompleteOperator,
    VeniceVideoQueueOperator,
    VeniceVideoQuoteOperator,
)
from airflow_provider_venice.sensors.video import VeniceVideoSensor
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator


def generate(model: str = T2V, **fields: Any) -> VeniceGenerateVideoOperator:
    fields.setdefault("prompt", "a red fox running through fresh snow")
    fields.setdefault("duration", "5s" if model == T2V else "6s")
    return VeniceGenerateVideoOperator(
        task_id="generate",
        model=model,
        s3_bucket=BUCKET,
        s3_key="videos/s.mp4",
        window_interval_s=0.2,
        deferrable=False,
        **fields,
    )


def faults(*items: dict[str, Any]) -> Any:
    return lambda stack: stack.venice.emu.add_faults(*items)


def a_day_later(stack: Stack) -> None:
    def hook(request: httpx.Request, send: Any) -> None:
        if request.url.path.endswith("/video/retrieve"):
            stack.venice.emu.advance(25 * 3600)
            stack.venice.transport.hooks.remove(hook)

    stack.venice.transport.hooks.append(hook)


FLOWS = [
    pytest.param(lambda: generate(), None, id="generate-ok"),
    pytest.param(lambda: generate(VPS), None, id="generate-vps-ok"),
    pytest.param(lambda: generate(), faults({"endpoint": "/models", "status": 401}), id="401-catalogue"),
    pytest.param(lambda: generate(), faults({"endpoint": "/video/queue", "status": 402}), id="402-queue"),
    pytest.param(lambda: generate(), faults({"endpoint": "/video/queue", "status": 500}), id="500-queue"),
    pytest.param(
        lambda: generate(), faults({"endpoint": "/video/queue", "action": "drop_after"}), id="reset-queue"
    ),
    pytest.param(
        lambda: generate(), faults({"endpoint": "/video/retrieve", "status": 403}), id="403-retrieve"
    ),
    pytest.param(
        lambda: generate(),
        faults({"endpoint": "/video/retrieve", "status": 503, "retry_after": 0, "times": 6}),
        id="503-retrieve-exhausted",
    ),
    pytest.param(lambda: generate(VPS), a_day_later, id="expired-download-url"),
    pytest.param(lambda: generate(prompt="forbidden words"), None, id="422-content-policy"),
    pytest.param(lambda: generate(duration="7s"), None, id="invalid-request"),
    pytest.param(
        lambda: VeniceVideoTranscriptionOperator(task_id="t", url="https://youtu.be/dQw4w9WgXcQ"),
        faults({"endpoint": "/video/transcriptions", "status": 410}),
        id="410-transcription",
    ),
    pytest.param(
        lambda: VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="no-such-job"),
        None,
        id="complete-unknown-job",
    ),
    pytest.param(
        lambda: VeniceVideoToS3Operator(
            task_id="s", model=T2V, queue_id="no-such-job", s3_bucket=BUCKET, s3_key="k"
        ),
        None,
        id="to-s3-unknown-job",
    ),
    pytest.param(
        lambda: VeniceVideoSensor(
            task_id="w", model=T2V, queue_id="no-such-job", deferrable=False, timeout=5
        ),
        None,
        id="sensor-unknown-job",
    ),
    pytest.param(
        lambda: VeniceVideoQuoteOperator(task_id="q", model=T2V, prompt="p", duration="5s"), None, id="quote"
    ),
    pytest.param(
        lambda: VeniceVideoQueueOperator(task_id="q", model=T2V, prompt="p", duration="5s"),
        faults({"endpoint": "/video/queue", "latency_s": 0, "times": 1}),
        id="queue",
    ),
]


def our_frame_locals(exc: BaseException) -> list[Any]:
    """Local variables of this package's frames in the traceback (not the emulator's, a test fixture)."""
    package = str(Path(__file__).resolve().parents[2] / "airflow_provider_venice")
    values: list[Any] = []
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename.startswith(package) and "/testing/" not in filename:
            values.extend(frame.f_locals.values())
    return values


def carried_requests(error: BaseException) -> list[str]:
    """The headers of the httpx requests an error carries (``error.request``, ``error.response.request``):
    a traceback renderer that shows attributes would print them."""
    found: list[str] = []
    for holder in (error, getattr(error, "response", None)):
        try:
            request = getattr(holder, "request", None)  # httpx raises when an error has none
        except RuntimeError:
            request = None
        if isinstance(request, httpx.Request):
            found += [str(request.url), repr(list(request.headers.raw))]
    return found


def everything_said(exc: BaseException | None, result: Any, op: Any, caplog: Any, capsys: Any) -> str:
    """Every place the key could leak to: logs, output, XCom, rendered fields, errors and their chains."""
    parts = [caplog.text, json.dumps(result, default=repr)]
    parts += [repr(r.args) + repr(getattr(r, "__dict__", {})) for r in caplog.records]
    captured = capsys.readouterr()
    parts += [captured.out, captured.err]
    parts += [f"{name}={getattr(op, name, None)!r}" for name in op.template_fields]
    parts += [repr(op), repr(vars(op))]
    if "hook" in vars(op):
        hook = vars(op)["hook"]
        parts += [repr(hook), repr(vars(hook))] + [repr(v) for v in vars(hook).values()]
    if exc is not None:
        for link in error_chain(exc):
            parts += [str(link), repr(link), repr(link.args), repr(getattr(link, "__dict__", {}))]
            parts += [repr(value) for value in our_frame_locals(link)]
            parts += carried_requests(link)
        parts += ["".join(traceback.format_exception(exc))]  # as Airflow logs it (no locals)
    return "\n".join(parts)


def around(text: str) -> str:
    index = text.find(SECRET)
    return text[max(0, index - 400) : index + 100]


@pytest.mark.parametrize(("make", "arrange"), FLOWS)
def test_the_key_appears_nowhere(stack: Stack, caplog: Any, capsys: Any, make: Any, arrange: Any) -> None:
    caplog.set_level(logging.DEBUG)  # httpx, httpcore, botocore and ours, at their chattiest
    stack.venice.connect(max_retries=1)
    if arrange is not None:
        arrange(stack)
    op = make()
    store = FakeStore()
    result: Any = None
    error: BaseException | None = None
    try:
        result = op.execute(make_context(store))
    except Exception as exc:  # the failing flows
        error = exc
    said = everything_said(error, result, op, caplog, capsys)
    assert SECRET not in said, around(said)
    assert SECRET not in json.dumps(store.data)
    assert SECRET not in json.dumps(stack.venice.emu.calls(), default=repr)
    # positive control: the key did go to the API (so the searches above could have found it) ...
    api = [r for r in stack.venice.transport.requests if r.url.path.startswith("/api/v1/")]
    assert api
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in api)
    # ... and never anywhere else: the download_url host gets no Authorization header at all
    media_requests = [r for r in stack.venice.transport.requests if r.url.path.startswith("/_media/")]
    assert all("authorization" not in r.headers for r in media_requests)
    media_calls = [c for c in stack.venice.emu.calls() if c["path"].startswith("/_media/")]
    assert all("authorization" not in c for c in media_calls)


def test_an_httpx_error_in_the_chain_carries_no_key(stack: Stack) -> None:
    """Defect 13: a connection reset after the paid call leaves httpx's error (with its request) in the
    chain; that request's Authorization header no longer holds the key."""
    stack.venice.emu.add_faults({"endpoint": "/video/queue", "action": "drop_after"})
    with pytest.raises(AirflowException) as info:
        generate().execute(make_context())
    carried = [text for link in error_chain(info.value) for text in carried_requests(link)]
    assert carried, "no httpx request in the chain: this test no longer covers what it should"
    assert all(SECRET not in text for text in carried), carried
    assert any("Bearer [redacted]" in text for text in carried), carried


def test_a_redirect_from_the_api_is_not_followed_with_the_key(stack: Stack) -> None:
    """An API answer redirecting elsewhere is an error; the key is never replayed to another host."""

    def redirect(request: httpx.Request, send: Any) -> httpx.Response | None:
        if request.url.path.endswith("/video/retrieve"):
            return httpx.Response(307, headers={"location": "https://collector.example/steal"})
        return None

    stack.venice.transport.hooks.append(redirect)
    with pytest.raises(AirflowException) as info:
        generate().execute(make_context())
    assert {r.url.host for r in stack.venice.transport.requests} == {"venice.test"}
    assert SECRET not in str(info.value)


def test_a_download_url_redirect_carries_no_key(stack: Stack) -> None:
    """download_url may redirect (CDNs do); the followed request has no Authorization header either."""
    state = {"redirected": False}

    def redirect_media(request: httpx.Request, send: Any) -> httpx.Response | None:
        if request.url.path.startswith("/_media/") and request.method == "GET" and not state["redirected"]:
            state["redirected"] = True
            return httpx.Response(
                302, headers={"location": str(request.url.copy_with(host="cdn.venice.test"))}
            )
        return None

    stack.venice.transport.hooks.append(redirect_media)
    generate(VPS).execute(make_context())
    cdn = [r for r in stack.venice.transport.requests if r.url.host == "cdn.venice.test"]
    assert cdn
    assert all("authorization" not in r.headers for r in cdn)
    assert stack.s3.objects() == delivery_keys("videos/s.mp4")


# --- plain http and TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conn",
    [
        {"host": "http://api.venice.ai/api/v1"},
        {"host": "HTTP://api.venice.ai/api/v1"},
        {"host": "http://10.0.0.5:8080/api/v1"},
        {"host": "http://192.168.1.20/api/v1"},
        {"host": "http://127.0.0.1.nip.io/api/v1"},
        {"host": "http://localhost.example.com/api/v1"},
        {"host": "http://[::ffff:10.0.0.1]/api/v1"},
        {"host": "http://127.0.0.1@evil.example/api/v1"},
        {"host": "api.venice.ai", "extra": {"scheme": "http"}},
        {"host": "ftp://api.venice.ai/api/v1"},
    ],
)
def test_plain_http_to_a_non_loopback_host_is_refused(
    monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any]
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VENICE_DEFAULT", json.dumps({"conn_type": "venice", "password": SECRET, **conn})
    )
    forget_catalogues()
    op = VeniceVideoQuoteOperator(task_id="q", model=T2V, prompt="p", duration="5s")
    with pytest.raises((VeniceError, AirflowException)) as info:
        op.execute(make_context())
    assert "http" in str(info.value)
    assert SECRET not in "".join(traceback.format_exception(info.value))
    with pytest.raises(VeniceError):
        register_transports(conn["host"] if "://" in conn["host"] else f"http://{conn['host']}")


@pytest.mark.parametrize(
    "host", ["http://127.0.0.1:9/api/v1", "http://localhost:9/api/v1", "http://[::1]:9/api/v1"]
)
def test_plain_http_to_loopback_is_allowed(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", connection(host))
    assert VeniceHook().settings.base_url == host


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.integration
@pytest.mark.parametrize(
    "extra",
    [
        {"verify": False},
        {"verify": "false"},
        {"verify_ssl": False},
        {"ssl_verify": False},
        {"insecure": True},
        {"tls_verify": False, "ca_bundle": ""},
    ],
)
def test_tls_verification_cannot_be_switched_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: dict[str, Any]
) -> None:
    """A self-signed HTTPS 'Venice' on loopback: whatever the extras say, the handshake is refused and
    no request (so no key) ever reaches that server."""
    cert, key = _self_signed(tmp_path)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("authorization", ""))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"object": "list", "data": []}')

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base_url = f"https://127.0.0.1:{server.server_address[1]}/api/v1"
        monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", connection(base_url, max_retries=0, **extra))
        ok, message = VeniceHook().test_connection()
        assert not ok
        assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate" in message.lower(), message
        assert seen == []
    finally:
        server.shutdown()
        server.server_close()


def test_big_failing_delivery_errors_stay_small_and_keyless(stack: Stack) -> None:
    """A 20 MiB delivery failing on S3: the error is short and says nothing about the key."""
    stack.venice.emu.configure(video_bytes=20 * MIB)
    stack.s3.faults.fail("UploadPart")
    with pytest.raises(AirflowException) as info:
        generate().execute(make_context())
    text = "".join(traceback.format_exception(info.value))
    assert SECRET not in text
    assert len(str(info.value)) < 1000


def test_venice_fixture_is_the_key_used(venice: Venice) -> None:
    assert SECRET in json.loads(connection(venice.emu.base_url))["password"]
