"""Sending email: to an SMTP server with aiosmtplib, or into a local mbox file when none is set.

Both raise `MailError` when the message was not handed over; the caller's outbox keeps it and
tries again later.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol

import aiosmtplib

from slackrouter.config import Settings

log = logging.getLogger(__name__)

Security = Literal["starttls", "tls", "none"]


class MailError(Exception):
    """The message was not handed over, for the reason given; sending it again may work."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand `message` over for delivery to its `To` recipients, or raise `MailError`."""


class SmtpMailer:
    """One SMTP connection per message.

    `security`: `"starttls"` (usually port 587; the upgrade is required, never skipped),
    `"tls"` (implicit TLS, usually port 465) or `"none"` (a trusted relay, e.g. on localhost).
    Certificates are verified against the system's CAs unless `tls_context` says otherwise.
    `timeout` is in seconds, for connecting and for each command.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"unknown SMTP security {security!r}")
        if (username is None) != (password is None):
            raise ValueError("SMTP username and password go together")
        if security == "none" and username is not None:
            log.warning("SMTP login to %s:%s without TLS: the password goes in clear", host, port)
        self._host = host
        self._port = port
        self._security = security
        self._username = username
        self._password = password
        self._timeout = timeout
        self._tls_context = tls_context

    async def send(self, message: EmailMessage) -> None:
        server = f"SMTP server {self._host}:{self._port}"
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                timeout=self._timeout,
                use_tls=self._security == "tls",
                start_tls=self._security == "starttls",
                tls_context=self._tls_context,
            )
        except aiosmtplib.SMTPTimeoutError as exc:
            raise MailError(f"{server} did not answer within {self._timeout:g}s") from exc
        except aiosmtplib.SMTPConnectError as exc:
            raise MailError(f"could not connect to {server}: {exc}") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise MailError(
                f"{server} refused the login of {self._username!r}: {exc.code} {exc.message}"
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            each = ", ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
            raise MailError(f"{server} refused the recipients: {each}") from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            raise MailError(
                f"{server} refused the sender {exc.sender}: {exc.code} {exc.message}"
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise MailError(f"{server} answered {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # No STARTTLS on offer, a certificate that does not verify, a dropped connection.
            raise MailError(f"{server}: {exc}") from exc
        if refused:
            # Some recipients took it: sending again would duplicate it for them.
            log.warning(
                "%s refused some recipients of %s: %s", server, message["Message-ID"], refused
            )


class MboxMailer:
    """Appends each message to the mbox file at `path`, for a setup without an SMTP server.

    Any mail reader opens the file (`mutt -f PATH`). Writes are serialised in this process and
    the file is locked (`fcntl` and a dot-lock) against other processes while one is appended;
    when another process holds the lock, `send` raises `MailError` rather than waiting.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        log.info("No SMTP server is set: mail goes to the mbox file %s", path.absolute())

    async def send(self, message: EmailMessage) -> None:
        # Unix line endings inside the file, whatever the message's own policy says.
        data = message.as_bytes(policy=message.policy.clone(linesep="\n"))
        try:
            await asyncio.to_thread(self._append, data)
        except (OSError, mailbox.Error) as exc:
            raise MailError(f"could not append to the mbox file {self._path}: {exc}") from exc

    def _append(self, data: bytes) -> None:
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            box = mailbox.mbox(self._path)
            box.lock()
            try:
                box.add(data)
            finally:
                box.close()  # flushes, then unlocks


def create_mailer(settings: Settings) -> Mailer:
    """SMTP when a host is set; otherwise an mbox file under ./var/."""
    if settings.smtp_host:
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            security=settings.smtp_security,  # type: ignore[arg-type]
            username=settings.smtp_username,
            password=settings.smtp_password,
        )
    return MboxMailer(Path(settings.mbox_path))
