"""Risk rules one by one, and notifiers: a real SMTP exchange over loopback, a webhook, and a
failing notifier that does not stop anything."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading

from app.trading.notify import EmailNotifier, Notifiers, WebhookNotifier
from app.trading.risk import DAY_NS, RiskGuard, RiskLimits

H = 3600 * 10**9


def test_drawdown_daily_loss_errors_and_stale_data():
    g = RiskGuard(RiskLimits(max_drawdown=0.3, max_daily_loss=0.1, max_consecutive_errors=3, stale_bars=2))
    assert g.on_equity(0, 100.0) is None and g.on_equity(H, 120.0) is None
    assert g.on_equity(2 * H, 91.0) is None  # 9 % below the day's start (100), 24 % below the peak
    assert "daily loss" in (g.on_equity(3 * H, 89.9) or "")
    g2 = RiskGuard(RiskLimits(max_drawdown=0.3, max_daily_loss=0.5))
    for day, eq in enumerate((100.0, 90.0, 80.0, 71.0)):
        assert g2.on_equity(day * DAY_NS, eq) is None  # a new day each time: no daily loss
    assert "drawdown" in (g2.on_equity(4 * DAY_NS, 70.0) or "")
    assert g.on_step(False) is None and g.on_step(False) is None and g.on_step(True) is None
    assert g.on_step(False) is None and g.on_step(False) is None and "consecutive" in (g.on_step(False) or "")
    assert g.on_data(0, 2 * H, H) is None  # closed at 1 h, now 2 h: one bar old
    assert "stale" in (g.on_data(0, 3 * H, H) or "")
    g.restore(g2.state())
    assert g.peak_usd == 100.0


class _SMTP(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    messages: list[str] = []

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test\r\n")
        while line := self.rfile.readline():
            cmd = line.decode().strip().upper()
            if cmd.startswith("EHLO") or cmd.startswith("HELO"):
                self.wfile.write(b"250 localhost\r\n")
            elif cmd == "DATA":
                self.wfile.write(b"354 go\r\n")
                body = []
                while (row := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(row.decode())
                _SMTP.messages.append("".join(body))
                self.wfile.write(b"250 ok\r\n")
            elif cmd == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_email_arrives_with_the_content():
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTP) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        n = EmailNotifier("127.0.0.1", server.server_address[1], "bot@example.org", ("me@example.org",),
                          security="none")
        n.send("kill switch", "acct: max drawdown 31 %; flat")
        server.shutdown()
    msg = _SMTP.messages[-1]
    assert "Subject: [raytrade] kill switch" in msg and "max drawdown 31 %" in msg and "To: me@example.org" in msg


def test_webhook_and_a_failing_notifier():
    got: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Hook) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        broken = EmailNotifier("127.0.0.1", 1, "a@b", ("c@d",), security="none", timeout_s=0.5)
        notifiers = Notifiers([broken, WebhookNotifier(f"http://127.0.0.1:{server.server_address[1]}/hook")])
        notifiers.send("liquidation", "BTC liquidated")  # the broken one fails, the webhook still gets it
        server.shutdown()
    assert got == [{"subject": "liquidation", "text": "BTC liquidated"}] and notifiers.failures == 1
