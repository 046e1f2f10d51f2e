"""Notifications: email over SMTP (stdlib smtplib) and a generic JSON webhook.

A failing notifier never stops trading: :class:`Notifiers` logs the failure and goes on.
SMTP credentials come from the environment (``RAYTRADE_SMTP_USER``,
``RAYTRADE_SMTP_PASSWORD``), never from YAML."""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

log = logging.getLogger("raytrade.trading")


class Notifier(Protocol):
    def send(self, subject: str, body: str) -> None: ...


@dataclass(frozen=True)
class EmailNotifier:
    """``security``: "starttls" (port 587), "ssl" (465) or "none" (a local relay, tests)."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    security: str = "starttls"
    timeout_s: float = 10.0

    def send(self, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = f"[raytrade] {subject}", self.sender, ", ".join(self.recipients)
        msg.set_content(body)
        user, password = os.environ.get("RAYTRADE_SMTP_USER"), os.environ.get("RAYTRADE_SMTP_PASSWORD")
        if self.security == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                                     context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with server:
            if self.security == "starttls":
                server.starttls(context=ssl.create_default_context())
            if user and password:
                server.login(user, password)
            server.send_message(msg)


@dataclass(frozen=True)
class WebhookNotifier:
    url: str
    timeout_s: float = 10.0

    def send(self, subject: str, body: str) -> None:
        data = json.dumps({"subject": subject, "text": body}).encode()
        req = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s):  # noqa: S310 - the user's own URL
            pass


@dataclass
class Notifiers:
    """Every configured notifier; failures are logged and counted, never raised."""

    targets: list[Notifier] = field(default_factory=list)
    failures: int = 0
    sent: list[str] = field(default_factory=list)

    def send(self, subject: str, body: str) -> None:
        self.sent.append(subject)
        for t in self.targets:
            try:
                t.send(subject, body)
            except Exception as exc:  # noqa: BLE001 - a notifier must never stop trading
                self.failures += 1
                log.warning("notifier %s failed: %s", type(t).__name__, exc)
