"""Account e-mails: multipart text + HTML, sent through SMTP."""

from __future__ import annotations

import html
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from videoflix_api.config import Settings

log = logging.getLogger(__name__)


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    def __init__(self, settings: Settings):
        self._settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self._settings
        smtp: smtplib.SMTP
        if s.smtp_ssl:
            smtp = smtplib.SMTP_SSL(
                s.smtp_host,
                s.smtp_port,
                timeout=s.smtp_timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        with smtp:
            if s.smtp_starttls and not s.smtp_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(message)
        log.info("Sent mail", extra={"subject": message["Subject"]})


def build_message(
    *, sender: str, to: str, subject: str, intro: str, link: str, action: str, outro: str
) -> EmailMessage:
    """A message with a plain-text body and an HTML alternative carrying one call-to-action link."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="videoflix")
    msg.set_content(f"{intro}\n\n{action}: {link}\n\n{outro}\n\n— Videoflix\n")
    e = html.escape
    msg.add_alternative(
        '<!doctype html><html><body style="font-family:sans-serif">'
        f"<p>{e(intro)}</p>"
        f'<p><a href="{e(link, quote=True)}" style="background:#2e3edf;color:#fff;'
        f'padding:10px 18px;border-radius:20px;text-decoration:none">{e(action)}</a></p>'
        f"<p>{e(outro)}</p><p>— Videoflix</p></body></html>",
        subtype="html",
    )
    return msg


def confirm_message(sender: str, to: str, link: str, hours: int) -> EmailMessage:
    return build_message(
        sender=sender,
        to=to,
        subject="Confirm your Videoflix account",
        intro="Thanks for signing up for Videoflix. Please confirm your e-mail address.",
        link=link,
        action="Activate account",
        outro=f"The link works once and expires in {hours} hours. "
        "If you did not sign up, ignore this e-mail.",
    )


def already_registered_message(sender: str, to: str, link: str) -> EmailMessage:
    return build_message(
        sender=sender,
        to=to,
        subject="Your Videoflix account",
        intro="Someone (hopefully you) tried to sign up with this address, "
        "but it already has a Videoflix account.",
        link=link,
        action="Reset your password",
        outro="If you forgot your password you can reset it there; otherwise ignore this e-mail.",
    )


def reset_message(sender: str, to: str, link: str, hours: int) -> EmailMessage:
    return build_message(
        sender=sender,
        to=to,
        subject="Reset your Videoflix password",
        intro="We received a request to reset the password of your Videoflix account.",
        link=link,
        action="Reset password",
        outro=f"The link works once and expires in {hours} hours. "
        "If you did not ask for this, ignore this e-mail: your password stays unchanged.",
    )
