"""The senders against a real SMTP server (aiosmtpd on loopback) and a real mbox file."""

from __future__ import annotations

import logging
import mailbox
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from slackrouter.adapters.mail import Mailer, MailError, MboxMailer, SmtpMailer
from slackrouter.adapters.mail_render import TranscriptLine
from slackrouter.sandbox.processes import free_port
from tests.mail_samples import CHAT_HEADERS, parse_email, sample_chat

HOST = "127.0.0.1"
T0 = datetime(2025, 3, 4, 14, 2, tzinfo=UTC)
REFUSED = "gone@example.com"


def chat(**overrides: Any) -> EmailMessage:
    """The sample chat, with a line that starts with "From " as an mbox's separator lines do."""
    transcript = [
        TranscriptLine("Nora", "Hi, do you ship to Norway?", T0),
        TranscriptLine("Nora", "From Oslo, that is.", T0 + timedelta(seconds=30)),
    ]
    return sample_chat(**{"transcript": transcript, "conversation_id": "conv-1", **overrides})


@dataclass
class Received:
    envelope: Envelope
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        assert isinstance(self.envelope.content, bytes)
        return parse_email(self.envelope.content)


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it is given and refuses one address."""

    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope, tls, bool(session.authenticated)))
        return "250 Message accepted for delivery"


def accept_only(login: str, password: str) -> Callable[..., AuthResult]:
    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (login.encode(), password.encode())
        return AuthResult(success=ok, handled=False)

    return authenticator


@dataclass
class Server:
    port: int
    inbox: Inbox


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Starts aiosmtpd on a free loopback port with the given SMTP options; stops it after."""
    controllers: list[Controller] = []

    def start(**smtp_options: Any) -> Server:
        inbox = Inbox()
        controller = Controller(inbox, hostname=HOST, port=free_port(), **smtp_options)
        controller.start()
        controllers.append(controller)
        return Server(controller.port, inbox)

    yield start
    for controller in controllers:
        controller.stop()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line tool."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
            f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


async def test_a_chat_arrives_header_by_header(start_server: Callable[..., Server]) -> None:
    server = start_server()
    mailer: Mailer = SmtpMailer(HOST, server.port, security="none")

    await mailer.send(chat())

    [received] = server.inbox.received
    assert not received.tls and not received.authenticated
    assert received.envelope.mail_from == "chat@example.com"
    assert received.envelope.rcpt_tos == ["rep@example.com"]
    message = received.message
    assert message["From"] == "slackrouter <chat@example.com>"
    assert message["To"] == "rep@example.com"
    assert message["Reply-To"] == "Nora <nora@example.org>"
    assert message["Subject"] == "Chat from Nora on Sales (no one was available)"
    assert message["Date"] == "Tue, 04 Mar 2025 14:02:30 +0000"
    assert message["Message-ID"] == "<conv-1.chat@chat.example.com>"
    assert message.get_content_type() == "multipart/alternative"
    text, markup = (message.get_body((kind,)) for kind in ("plain", "html"))
    assert text is not None and text.get_content_type() == "text/plain"
    assert markup is not None and markup.get_content_type() == "text/html"
    for body in (text.get_content(), markup.get_content()):
        assert "Hi, do you ship to Norway?" in body
        assert "From Oslo, that is." in body
        assert "2025-03-04 14:02 UTC" in body
        assert "https://example.com/pricing" in body


LOGIN_WITHOUT_TLS = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@LOGIN_WITHOUT_TLS
async def test_a_login_is_accepted(start_server: Callable[..., Server]) -> None:
    server = start_server(
        authenticator=accept_only("slackrouter", "s3cret"),
        auth_required=True,
        auth_require_tls=False,
    )
    mailer = SmtpMailer(
        HOST, server.port, security="none", username="slackrouter", password="s3cret"
    )

    await mailer.send(chat())

    [received] = server.inbox.received
    assert received.authenticated


@LOGIN_WITHOUT_TLS
async def test_a_wrong_password_is_a_mail_error(start_server: Callable[..., Server]) -> None:
    server = start_server(
        authenticator=accept_only("slackrouter", "s3cret"),
        auth_required=True,
        auth_require_tls=False,
    )
    mailer = SmtpMailer(HOST, server.port, security="none", username="slackrouter", password="nope")

    with pytest.raises(MailError, match=r"refused the login of 'slackrouter': 535"):
        await mailer.send(chat())
    assert server.inbox.received == []


async def test_starttls_then_login(
    start_server: Callable[..., Server], certificate: Certificate
) -> None:
    server = start_server(
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=accept_only("slackrouter", "s3cret"),
        auth_required=True,
    )
    mailer = SmtpMailer(
        HOST,
        server.port,
        security="starttls",
        username="slackrouter",
        password="s3cret",
        tls_context=certificate.client_context(),
    )

    await mailer.send(chat())

    [received] = server.inbox.received
    assert received.tls and received.authenticated


async def test_implicit_tls(start_server: Callable[..., Server], certificate: Certificate) -> None:
    server = start_server(ssl_context=certificate.server_context())
    mailer = SmtpMailer(HOST, server.port, security="tls", tls_context=certificate.client_context())

    await mailer.send(chat())

    [received] = server.inbox.received
    assert received.tls


async def test_an_untrusted_certificate_is_a_mail_error(
    start_server: Callable[..., Server], certificate: Certificate
) -> None:
    server = start_server(tls_context=certificate.server_context(), require_starttls=True)
    mailer = SmtpMailer(HOST, server.port, security="starttls")  # the system's CAs only

    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
        await mailer.send(chat())
    assert server.inbox.received == []


async def test_starttls_is_never_skipped(start_server: Callable[..., Server]) -> None:
    server = start_server()  # offers no STARTTLS
    mailer = SmtpMailer(HOST, server.port, security="starttls")

    with pytest.raises(MailError, match="STARTTLS extension not supported"):
        await mailer.send(chat())
    assert server.inbox.received == []


async def test_a_server_that_is_down_is_a_mail_error() -> None:
    port = free_port()  # nobody listens there any more
    mailer = SmtpMailer(HOST, port, security="none")

    with pytest.raises(MailError, match=f"could not connect to SMTP server {HOST}:{port}"):
        await mailer.send(chat())


async def test_a_server_that_never_answers_is_a_mail_error() -> None:
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen()  # connections complete in the backlog, and no greeting ever comes
        mailer = SmtpMailer(HOST, silent.getsockname()[1], security="none", timeout=0.2)

        with pytest.raises(MailError, match=r"did not answer within 0.2s"):
            await mailer.send(chat())


async def test_a_refused_recipient_is_a_mail_error(start_server: Callable[..., Server]) -> None:
    server = start_server()
    mailer = SmtpMailer(HOST, server.port, security="none")

    with pytest.raises(MailError, match=rf"refused the recipients: {REFUSED} \(550 5.1.1"):
        await mailer.send(chat(to=REFUSED))
    assert server.inbox.received == []


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("Nora\r\nBcc: victim@example.com", "a@b.c\r\nBcc: x@y.z"),
        ("=?utf-8?q?Nora=0D=0ABcc:_victim@example.com?=", "a@b.c\nBcc: x@y.z"),
    ],
)
async def test_visitor_input_adds_no_header_and_no_recipient(
    start_server: Callable[..., Server], name: str, address: str
) -> None:
    server = start_server()
    mailer = SmtpMailer(HOST, server.port, security="none")

    await mailer.send(chat(visitor_name=name, visitor_email=address))

    [received] = server.inbox.received
    assert received.envelope.rcpt_tos == ["rep@example.com"]
    message = received.message
    assert sorted(message.keys()) == sorted(CHAT_HEADERS - {"Reply-To"})
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]


async def test_mbox_keeps_every_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "var" / "mail" / "outbox.mbox"
    with caplog.at_level(logging.INFO, logger="slackrouter.adapters.mail"):
        mailer: Mailer = MboxMailer(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"No SMTP server is set: mail goes to the mbox file {path}"
    ]

    await mailer.send(chat())
    await mailer.send(
        chat(
            conversation_id="conv-2",
            visitor_name="Ola",
            visitor_email=None,
            reason="From 9 to 5 someone answers; this came after hours",
        )
    )

    box = mailbox.mbox(path, factory=lambda file: parse_email(file.read()), create=False)
    try:
        first, second = box  # the reason's "From " line did not start a third message
    finally:
        box.close()
    assert first["Message-ID"] == "<conv-1.chat@chat.example.com>"
    assert first["Reply-To"] == "Nora <nora@example.org>"
    assert second["Message-ID"] == "<conv-2.chat@chat.example.com>"
    assert second["Subject"] == "Chat from Ola on Sales (no one was available)"
    text = second.get_body(("plain",))
    assert text is not None
    assert "From Oslo, that is." in text.get_content()
    assert "The visitor left no email address." in text.get_content()
