"""Alerts for NEW check failures only, through log, a webhook and SMTP e-mail.

What is new is decided before this module (`results.FailureBook`): offending keys that were
not already open for the same check, or a check that errors after it did not. So a defect
that stays unfixed alerts once, and a key that fails again after it was resolved alerts again.

Channels (`quality.alerts` in the config):
- ``log``: one warning event through the injected reporter;
- ``webhook``: a Slack-compatible ``POST {"text": …}`` (JSON) with urllib;
- ``smtp``: a plain-text e-mail with smtplib, STARTTLS by default, login when `user` is set.

Secrets (the webhook URL usually carries a token, the SMTP password) never appear in a
message, a log line or an error: error texts are scrubbed of them. A failing channel is
reported (`Delivery.ok` False, a warning event) and never stops the run or the other channels.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage

from trackline.config import AlertsConfig, SmtpAlert, WebhookAlert
from trackline.quality.results import CheckResult
from trackline.report import NullReporter, Reporter

KEYS_SHOWN = 5


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str
    """Short text (chat)."""
    body: str
    """Long text (e-mail): the short text plus each failing check's SQL."""


@dataclass(frozen=True)
class Delivery:
    channel: str
    ok: bool
    error: str | None = None


def compose(results: Iterable[CheckResult], run_id: str) -> Alert | None:
    """The alert for this run's NEW failures, or None when nothing is new."""
    fresh = [r for r in results if r.is_new]
    if not fresh:
        return None
    n = sum(r.new_count for r in fresh)
    subject = (
        f"trackline: {n} new data-quality failure{'s' if n != 1 else ''} "
        f"({', '.join(r.name for r in fresh[:3])}{', …' if len(fresh) > 3 else ''})"
    )
    lines = [f"{subject} — check run {run_id}"]
    long = list(lines)
    for r in fresh:
        if r.status == "error":
            line = f"• [{r.severity}] {r.name}: the check could not run: {r.error}"
        else:
            keys = ", ".join(r.new_keys[:KEYS_SHOWN])
            more = " …" if r.new_count > KEYS_SHOWN else ""
            line = (
                f"• [{r.severity}] {r.name}: {r.new_count:,} new of {r.failing_count:,} "
                f"failing" + (f" — {keys}{more}" if keys else "")
            )
        lines.append(line)
        long.append(line)
        if r.description:
            lines.append(f"  {r.description}")
            long.append(f"  {r.description}")
        if r.sql:
            long.append("  SQL:")
            long += [f"    {s}" for s in r.sql.splitlines()]
    return Alert(subject, "\n".join(lines), "\n".join(long) + "\n")


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "**********")
    return text


def send_webhook(cfg: WebhookAlert, alert: Alert) -> None:
    url = cfg.url.get_secret_value()
    body = json.dumps({"text": alert.text}).encode()
    req = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "trackline"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout) as resp:  # noqa: S310 - http(s) only, checked in config
            resp.read()
    except urllib.error.HTTPError as exc:
        raise OSError(f"the webhook answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"the webhook could not be reached: {exc.reason}") from None


def send_smtp(cfg: SmtpAlert, alert: Alert) -> None:
    msg = EmailMessage()
    msg["Subject"] = alert.subject
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.recipients)
    msg.set_content(alert.body)
    with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout) as smtp:
        smtp.ehlo()
        if cfg.starttls:
            ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if cfg.user:
            smtp.login(cfg.user, cfg.password.get_secret_value())
        smtp.send_message(msg)


def deliver(alert: Alert, cfg: AlertsConfig, reporter: Reporter | None = None) -> list[Delivery]:
    """Send `alert` through every configured channel; a failing channel is reported."""
    reporter = reporter or NullReporter()
    out: list[Delivery] = []
    secrets: list[str] = []
    if cfg.webhook:
        secrets.append(cfg.webhook.url.get_secret_value())
    if cfg.smtp:
        secrets.append(cfg.smtp.password.get_secret_value())
    if cfg.log:
        for line in alert.text.splitlines():
            reporter.event("warning", line, alert=True)
        out.append(Delivery("log", True))
    channels = []
    if cfg.webhook:
        webhook = cfg.webhook
        channels.append(("webhook", lambda: send_webhook(webhook, alert)))
    if cfg.smtp:
        smtp = cfg.smtp
        channels.append(("smtp", lambda: send_smtp(smtp, alert)))
    for name, send in channels:
        try:
            send()
        except Exception as exc:  # a failing channel is reported, never fatal
            reason = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            reporter.event("warning", f"alert channel {name} failed: {reason}", channel=name)
            out.append(Delivery(name, False, reason))
        else:
            reporter.event("alert_sent", f"alert sent through {name}", channel=name)
            out.append(Delivery(name, True))
    return out
