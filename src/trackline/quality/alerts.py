"""Alerts for NEW check failures only, through log, a webhook and SMTP e-mail.

What is new is decided before this module (`results.FailureBook`): offending keys that were
not already open for the same check, or a check that errors after it did not. So a defect
that stays unfixed alerts once, and a key that fails again after it was resolved alerts again.

Channels (`quality.alerts` in the config):
- ``log``: one warning event through the injected reporter;
- ``webhook``: a Slack-compatible ``POST {"text": …}`` (JSON) with urllib;
- ``smtp``: a plain-text e-mail with smtplib, STARTTLS by default, login when `user` is set.

A check that was failing and passes again (its open exceptions resolve, or it errored
before) is announced once as recovered, in the same message as the new failures.

Secrets (the webhook URL usually carries a token, the SMTP password) never appear in a
message, a log line or an error: error texts are scrubbed of them. A failing channel is
reported (`Delivery.ok` False, a warning event) and never stops the run or the other channels;
what it could not send is held (`Delivery.held`, kept in the check run's row) and sent again,
oldest first, before anything new at the next evaluation, through that channel only. At most
`HELD_MAX` messages are held per channel; older ones are dropped with a warning.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage

from trackline.config import AlertsConfig, SmtpAlert, WebhookAlert
from trackline.quality.results import CheckResult
from trackline.report import NullReporter, Reporter

KEYS_SHOWN = 5
HELD_MAX = 20
"""Undelivered messages kept per channel for the next try."""


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str
    """Short text (chat)."""
    body: str
    """Long text (e-mail): the short text plus each failing check's SQL."""

    def as_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "text": self.text, "body": self.body}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> Alert:
        return cls(d["subject"], d["text"], d["body"])

    def held(self) -> Alert:
        """The same alert, sent late."""
        if self.subject.startswith("[delayed] "):
            return self
        note = "[delayed] "
        return Alert(note + self.subject, note + self.text, note + self.body)


@dataclass(frozen=True)
class Delivery:
    channel: str
    ok: bool
    error: str | None = None
    sent: int = 0
    held: tuple[Alert, ...] = ()
    """Alerts this channel could not send (kept for the next evaluation)."""


def _names(results: list[CheckResult]) -> str:
    return ", ".join(r.name for r in results[:3]) + (", …" if len(results) > 3 else "")


def compose(results: Iterable[CheckResult], run_id: str) -> Alert | None:
    """The alert for this run's NEW failures and recovered checks, or None when nothing is
    new and nothing recovered."""
    results = list(results)
    fresh = [r for r in results if r.is_new]
    recovered = [r for r in results if r.recovered]
    if not fresh and not recovered:
        return None
    n = sum(r.new_count for r in fresh)
    if fresh:
        plural = "s" if n != 1 else ""
        # n counts new failing keys; say over how many checks when that differs
        checks = f" in {len(fresh)} checks" if len(fresh) not in (1, n) else ""
        subject = f"trackline: {n} new data-quality failure{plural}{checks} ({_names(fresh)})"
        if recovered:
            subject += f"; recovered: {_names(recovered)}"
    else:
        subject = f"trackline: recovered: {_names(recovered)}"
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
    for r in recovered:
        line = f"• [{r.severity}] {r.name}: passes again" + (
            f" ({r.resolved_count:,} resolved)" if r.resolved_count else ""
        )
        lines.append(line)
        long.append(line)
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


def deliver(
    alert: Alert | None,
    cfg: AlertsConfig,
    reporter: Reporter | None = None,
    held: dict[str, list[Alert]] | None = None,
) -> list[Delivery]:
    """Send what `held` kept for each channel (oldest first), then `alert`, through every
    configured channel; a failing channel is reported and keeps what it could not send."""
    reporter = reporter or NullReporter()
    held = held or {}
    out: list[Delivery] = []
    secrets: list[str] = []
    if cfg.webhook:
        secrets.append(cfg.webhook.url.get_secret_value())
    if cfg.smtp:
        secrets.append(cfg.smtp.password.get_secret_value())
    if cfg.log and alert is not None:
        for line in alert.text.splitlines():
            reporter.event("warning", line, alert=True)
        out.append(Delivery("log", True, sent=1))
    channels: list[tuple[str, Callable[[Alert], None]]] = []
    if cfg.webhook:
        webhook = cfg.webhook
        channels.append(("webhook", lambda a: send_webhook(webhook, a)))
    if cfg.smtp:
        smtp = cfg.smtp
        channels.append(("smtp", lambda a: send_smtp(smtp, a)))
    for name, send in channels:
        queue = [a.held() for a in held.get(name, [])] + ([alert] if alert else [])
        if not queue:
            continue
        if len(queue) > HELD_MAX:
            dropped = len(queue) - HELD_MAX
            reporter.event(
                "warning",
                f"alert channel {name}: {dropped} undelivered alert(s) dropped (over {HELD_MAX})",
                channel=name,
            )
            queue = queue[dropped:]
        sent = 0
        try:
            for a in queue:
                send(a)
                sent += 1
        except Exception as exc:  # a failing channel is reported, never fatal
            reason = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            reporter.event(
                "warning",
                f"alert channel {name} failed: {reason}; {len(queue) - sent} alert(s) held "
                "for the next try",
                channel=name,
            )
            out.append(Delivery(name, False, reason, sent, tuple(queue[sent:])))
        else:
            reporter.event("alert_sent", f"alert sent through {name}", channel=name)
            out.append(Delivery(name, True, sent=sent))
    return out
