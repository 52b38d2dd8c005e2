"""Welcome email over SMTP, sent from a background task after the response has gone out.

Nothing here raises: a broken mail server must never turn a registration into an error.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from .settings import SmtpSettings

log = logging.getLogger("app.email")

SMTP_TIMEOUT_SECONDS = 10
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def welcome_message(sender: str, recipient: str, name: str | None) -> EmailMessage:
    """The welcome email body; plain text keeps it readable in every client."""
    msg = EmailMessage()
    msg["From"] = f"Lumina Todo <{sender}>"
    msg["To"] = recipient
    msg["Subject"] = "Welcome to Lumina Todo"
    greeting = f"Hi {name}," if name else "Hi,"
    msg.set_content(
        f"{greeting}\n\n"
        "your Lumina Todo account is ready. Add your first todo, or ask the assistant in the\n"
        "chat panel to do it for you.\n\n"
        "The Lumina Todo team\n"
    )
    return msg


def send_welcome_email(smtp: SmtpSettings, recipient: str, name: str | None) -> None:
    """Send the welcome email if SMTP credentials are configured; log, never raise."""
    if not smtp.enabled or smtp.user is None or smtp.password is None:
        log.info(
            "welcome email skipped: SMTP_USER/SMTP_PASS not set",
            extra={"fields": {"to": recipient}},
        )
        return
    message = welcome_message(smtp.user, recipient, name)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT_SECONDS) as client:
            client.ehlo()
            tls = client.has_extn("starttls")
            if tls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            elif smtp.host not in LOOPBACK_HOSTS:
                # Never send the password in clear text over a network.
                log.warning(
                    "welcome email not sent: server offers no STARTTLS",
                    extra={"fields": {"smtp_host": smtp.host, "smtp_port": smtp.port}},
                )
                return
            client.login(smtp.user, smtp.password)
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning(
            "welcome email failed",
            extra={
                "fields": {
                    "to": recipient,
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            },
        )
        return
    log.info("welcome email sent", extra={"fields": {"to": recipient, "tls": tls}})
