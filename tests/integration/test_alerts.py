"""Alerts: only NEW failures, through a real local webhook server and a real SMTP server.

The webhook is `http.server` in a thread on 127.0.0.1; the SMTP server is aiosmtpd on
127.0.0.1 (plain with AUTH, and STARTTLS with a certificate made for the test). Secrets (the
webhook's token, the SMTP password) must never show up in messages, logs or tables.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.quality_world import ECS, MART, STATE, UTI, UTS, World, day
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.quality.run import run_checks, run_level_alerts
from trackline.report import NullReporter
from trackline.schedule import Job, Scheduler, cycle_job, every

TOKEN = "T0KEN-s3cr3t-abcdef"
SMTP_PASSWORD = "pa55-w0rd-xyz"
HAS_ROW = f"order_tracking.has_row.{ECS}"


# --------------------------------------------------------------------------- servers


@dataclass
class Hook:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[Hook]:
    hook = Hook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.paths.append(self.path)
            assert self.headers["Content-Type"] == "application/json"
            hook.posts.append(json.loads(body))
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/{TOKEN}"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    port: int
    messages: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


def _smtp_server(tls: ssl.SSLContext | None) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox(_free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            msg = message_from_bytes(envelope.content)
            box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            return "250 OK"

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"alerts"
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        if ok:
            box.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd itself answers 535 on a refusal
        return AuthResult(success=ok, handled=False)

    kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": tls is not None}
    if tls is not None:
        kwargs.update(tls_context=tls, require_starttls=True)
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port, **kwargs)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    yield from _smtp_server(None)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_smtp_server(tls_files: tuple[Path, Path]) -> Iterator[Mailbox]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    yield from _smtp_server(ctx)


# --------------------------------------------------------------------------- helpers


def alerts_config(hook: Hook | None, box: Mailbox | None, **smtp: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"log": True}
    if hook:
        cfg["webhook"] = {"url": hook.url, "timeout": 5}
    if box:
        cfg["smtp"] = {
            "host": "127.0.0.1",
            "port": box.port,
            "user": "alerts",
            "password": SMTP_PASSWORD,
            "sender": "trackline@example.org",
            "recipients": ["oncall@example.org", "data@example.org"],
            "starttls": False,
            **smtp,
        }
    return {"alerts": cfg}


def everything_written(world: World, reporter: NullReporter) -> str:
    """Every text trackline wrote: events, run history, results, exceptions."""
    parts = [repr(reporter.events)]
    for schema, table in [
        (STATE, "runs"),
        (STATE, "check_results"),
        (STATE, "check_exceptions"),
        (MART, "order_tracking_exceptions"),
    ]:
        parts.append(repr(world.wh.query(f"SELECT * FROM {world.wh.t(schema, table)}")))
    return "\n".join(parts)


@pytest.fixture
def world(tmp_path: Path, warehouse_config: DuckDBWarehouse | PostgresWarehouse) -> Iterator[World]:
    w = World(tmp_path, warehouse_config).build()
    try:
        yield w
    finally:
        w.close()


# --------------------------------------------------------------------------- tests


def test_alerts_fire_only_for_new_failures_over_three_runs(
    world: World, webhook: Hook, smtp_server: Mailbox
) -> None:
    world.reconfigure(**alerts_config(webhook, smtp_server))
    wh, t = world.wh, world.t
    reporter = NullReporter()

    # run 1: order 6 loses its follower row -> one new failure -> one alert per channel
    wh.execute(f"DELETE FROM {t(ECS)} WHERE order_id = 6")
    r1 = run_checks(world.cfg, wh, reporter)
    assert [(d.channel, d.ok) for d in r1.deliveries] == [
        ("log", True),
        ("webhook", True),
        ("smtp", True),
    ]
    assert len(webhook.posts) == 1 and len(smtp_server.messages) == 1
    text = webhook.posts[0]["text"]
    assert f"{HAS_ROW}: 1 new of 1 failing — 6" in text
    assert world.open_exceptions(HAS_ROW) == ["6"]

    # run 2: nothing changed -> the failure is still there, but it is not new: no alert
    r2 = run_checks(world.cfg, wh, reporter)
    assert [r.name for r in r2.results if r.failed] == [HAS_ROW]
    assert r2.alert is None and r2.deliveries == []
    assert len(webhook.posts) == 1 and len(smtp_server.messages) == 1
    assert world.open_exceptions(HAS_ROW) == ["6"]  # de-duplicated, not a second row

    # run 3: order 7 breaks too; order 4 loses its events -> alert names only the new keys
    wh.execute(f"DELETE FROM {t(ECS)} WHERE order_id = 7")
    wh.execute(f"DELETE FROM {t(UTS)} WHERE order_id = 4")
    r3 = run_checks(world.cfg, wh, reporter)
    assert len(webhook.posts) == 2 and len(smtp_server.messages) == 2
    text = webhook.posts[1]["text"]
    assert f"{HAS_ROW}: 1 new of 2 failing — 7" in text
    assert f"order_tracking.has_events.{UTS}: 1 new of 1 failing — 4" in text
    assert "— 6" not in text
    assert world.open_exceptions(HAS_ROW) == ["6", "7"]
    assert {r.name: r.new_count for r in r3.results if r.failed} == {
        HAS_ROW: 1,
        f"order_tracking.has_events.{UTS}": 1,
    }

    # the e-mail: subject, both recipients, and the failing check's SQL in the body
    sender, rcpts, msg = smtp_server.messages[1]
    assert sender == "trackline@example.org"
    assert rcpts == ["oncall@example.org", "data@example.org"]
    assert msg["Subject"].startswith("trackline: 2 new data-quality failures")
    body = msg.get_payload(decode=True).decode()
    assert "SQL:" in body and "NOT EXISTS" in body
    assert smtp_server.logins == ["alerts", "alerts"]

    # the log channel said the same; no secret anywhere
    assert any(f.get("alert") for _, _, f in reporter.events)
    written = everything_written(world, reporter)
    assert TOKEN not in written and SMTP_PASSWORD not in written
    assert all(TOKEN not in json.dumps(p) for p in webhook.posts)
    assert webhook.paths == [f"/hooks/{TOKEN}"] * 2  # ... but it was used to call the hook


def test_a_failing_channel_is_reported_not_fatal(
    world: World, webhook: Hook, smtp_server: Mailbox
) -> None:
    webhook.status = 500
    world.reconfigure(**alerts_config(webhook, smtp_server))
    world.wh.execute(f"DELETE FROM {world.t(ECS)} WHERE order_id = 6")
    reporter = NullReporter()
    report = run_checks(world.cfg, world.wh, reporter)
    got = {d.channel: d for d in report.deliveries}
    assert not got["webhook"].ok and "HTTP 500" in (got["webhook"].error or "")
    assert got["smtp"].ok and len(smtp_server.messages) == 1  # the other channel still sent
    # a dead endpoint and a refusing SMTP login are reported too, and name no secret
    dead = f"http://127.0.0.1:{_free_port()}/hooks/{TOKEN}"
    world.reconfigure(
        alerts={
            "log": False,
            "webhook": {"url": dead, "timeout": 2},
            "smtp": {
                **alerts_config(None, smtp_server)["alerts"]["smtp"],
                "password": "wrong-" + SMTP_PASSWORD,
            },
        }
    )
    world.wh.execute(f"DELETE FROM {world.t(ECS)} WHERE order_id = 7")
    report = run_checks(world.cfg, world.wh, reporter)
    got = {d.channel: d for d in report.deliveries}
    assert set(got) == {"webhook", "smtp"} and not got["webhook"].ok and not got["smtp"].ok
    assert "could not be reached" in (got["webhook"].error or "")
    assert "Authentication" in (got["smtp"].error or "") or "535" in (got["smtp"].error or "")
    written = everything_written(world, reporter) + repr(report.deliveries)
    assert TOKEN not in written and SMTP_PASSWORD not in written
    # the run itself is recorded as usual, with the channel outcome
    detail = json.loads(
        world.wh.scalar(
            f"SELECT detail FROM {world.wh.t(STATE, 'runs')} WHERE run_id = ?", (report.run_id,)
        )
    )
    assert set(detail["alerts"]) == {"webhook", "smtp"}


def test_smtp_with_starttls(
    tmp_path: Path, tls_smtp_server: Mailbox, tls_files: tuple[Path, Path]
) -> None:
    w = World(tmp_path, DuckDBWarehouse(path=tmp_path / "wh.duckdb")).build()
    try:
        w.reconfigure(
            **alerts_config(None, tls_smtp_server, starttls=True, ca_file=str(tls_files[0]))
        )
        w.wh.execute(f"DELETE FROM {w.t(UTI)} WHERE order_id = 8")  # order 8: events only
        w.wh.execute(f"DELETE FROM {w.t(ECS)} WHERE order_id = 3")
        report = run_checks(w.cfg, w.wh)
        assert {d.channel: d.ok for d in report.deliveries} == {"log": True, "smtp": True}
        assert len(tls_smtp_server.messages) == 1 and tls_smtp_server.logins == ["alerts"]
        # without the CA the certificate is refused: reported, not fatal
        w.reconfigure(**alerts_config(None, tls_smtp_server, starttls=True))
        w.wh.execute(f"DELETE FROM {w.t(ECS)} WHERE order_id = 4")
        report = run_checks(w.cfg, w.wh)
        smtp = next(d for d in report.deliveries if d.channel == "smtp")
        assert not smtp.ok and "CERTIFICATE_VERIFY_FAILED" in (smtp.error or "")
    finally:
        w.close()


# --------------------------------------------------------------------------- at once, via run


class _Clock:
    """A fake clock for the scheduler: slots advance by hand, nothing sleeps."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 2, 5, 1)

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def next_slot(self) -> None:
        self.now += dt.timedelta(minutes=15)


def _scheduler(world: World, clock: _Clock, reporter: NullReporter) -> Scheduler:
    cfg, wh = world.cfg, world.wh
    slot, period = every(cfg.schedule.cycle_minutes)
    return Scheduler(
        cfg,
        wh,
        clock=clock,
        sleep=clock.sleep,
        reporter=reporter,
        jobs=[Job("cycle", slot, period, lambda: cycle_job(cfg, wh, reporter))],
        alerts=lambda: run_level_alerts(cfg, wh, reporter),
    )


def _rename(world: World, old: str, new: str) -> None:
    con = sqlite3.connect(world.src_path)
    con.execute(f"ALTER TABLE {old} RENAME TO {new}")
    con.commit()
    con.close()


def test_run_alerts_right_after_a_failed_cycle_and_once_when_it_recovers(
    world: World, webhook: Hook, smtp_server: Mailbox
) -> None:
    world.reconfigure(**alerts_config(webhook, smtp_server))
    clock, reporter = _Clock(), NullReporter()
    sched = _scheduler(world, clock, reporter)

    # a cycle fails (a source table is gone): the alert leaves right after it, not a day later
    _rename(world, "ecs_order_info", "ecs_gone")
    assert sched.run_due() == ["cycle"]
    assert sched.results["cycle"].status == "failed"
    assert len(webhook.posts) == 1 and len(smtp_server.messages) == 1
    failed_run = world.wh.scalar(
        f"SELECT run_id FROM {world.wh.t(STATE, 'runs')} WHERE command = 'cycle' "
        "AND status = 'partial'"
    )
    assert f"runs.failed_cycle: 1 new of 1 failing — {failed_run}" in webhook.posts[0]["text"]

    # the next cycle is ok: ONE recovery message ...
    _rename(world, "ecs_gone", "ecs_order_info")
    world.touch(30, day(46) + 60)
    world.clock(day(46) + 120)
    clock.next_slot()
    assert sched.run_due() == ["cycle"] and sched.results["cycle"].status == "ok"
    assert len(webhook.posts) == 2 and len(smtp_server.messages) == 2
    text = webhook.posts[1]["text"]
    assert text.startswith("trackline: recovered: runs.failed_cycle")
    assert "runs.failed_cycle: passes again (1 resolved)" in text
    assert smtp_server.messages[1][2]["Subject"].startswith("trackline: recovered:")
    assert world.open_exceptions("runs.failed_cycle") == []
    # ... and nothing more while it stays ok
    clock.next_slot()
    assert sched.run_due() == ["cycle"]
    assert len(webhook.posts) == 2 and len(smtp_server.messages) == 2


def test_run_with_an_alert_channel_down_holds_the_alert_and_sends_it_later(
    world: World, webhook: Hook, smtp_server: Mailbox
) -> None:
    world.reconfigure(**alerts_config(webhook, smtp_server))
    clock, reporter = _Clock(), NullReporter()
    sched = _scheduler(world, clock, reporter)
    webhook.status = 503  # the chat hook is down

    # the source clock runs 5 days past the newest order: freshness fails after an ok cycle
    world.clock(day(50))
    assert sched.run_due() == ["cycle"]
    assert sched.results["cycle"].status == "ok"  # the cycle is not hurt by the channel
    assert len(smtp_server.messages) == 1  # the other channel delivered at once
    assert "order_tracking.freshness" in smtp_server.messages[0][2]["Subject"]
    assert len(webhook.posts) == 1  # tried, answered 503
    warned = [m for _, m, f in reporter.events if f.get("channel") == "webhook"]
    assert any("1 alert(s) held for the next try" in m for m in warned)
    held = json.loads(
        world.wh.scalar(
            f"SELECT detail FROM {world.wh.t(STATE, 'runs')} WHERE command = 'check' "
            "ORDER BY started_at DESC LIMIT 1"
        )
    )
    assert held["alerts"]["webhook"].startswith("OSError: the webhook answered HTTP 503")
    assert [a["subject"] for a in held["held_alerts"]["webhook"]] == [
        smtp_server.messages[0][2]["Subject"]
    ]

    # still down at the next cycle: tried again, still held (not lost, not duplicated)
    clock.next_slot()
    sched.run_due()
    assert len(webhook.posts) == 2 and len(smtp_server.messages) == 1

    # back up: the held alert arrives, marked as late; e-mail gets nothing twice
    webhook.status = 200
    clock.next_slot()
    sched.run_due()
    assert len(webhook.posts) == 3 and len(smtp_server.messages) == 1
    late = webhook.posts[2]["text"]
    assert late.startswith("[delayed] trackline: 1 new data-quality failure")
    assert "order_tracking.freshness" in late
    detail = json.loads(
        world.wh.scalar(
            f"SELECT detail FROM {world.wh.t(STATE, 'runs')} WHERE command = 'check' "
            "ORDER BY started_at DESC LIMIT 1"
        )
    )
    assert detail["held_alerts"] == {}
    clock.next_slot()
    sched.run_due()
    assert len(webhook.posts) == 3  # sent once
    assert TOKEN not in everything_written(world, reporter)
