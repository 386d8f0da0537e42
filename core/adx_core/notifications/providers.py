"""Notification providers: SMTP through aiosmtplib, and a signed JSON webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
from email.message import EmailMessage
from email.utils import make_msgid

import aiohttp
import aiosmtplib

from adx_core.notifications.message import Message, NotificationRejectedError, Notifier
from adx_core.settings import NotifyProvider, Settings, SmtpSecurity

SIGNATURE_HEADER = "X-ADX-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class SmtpNotifier:
    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("ADX_SMTP_HOST is needed for SMTP notifications")
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._security = settings.smtp_security
        self._username = settings.smtp_username
        self._password = settings.smtp_password
        self._sender = settings.notify_from
        self._timeout = settings.notify_timeout_seconds

    def _mail(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        # Derived from the notification's key, so a duplicate send (a crash after the
        # server accepted it, before we recorded it) can be recognised by the receiver.
        digest = hashlib.sha256(message.key.encode()).hexdigest()[:32]
        mail["Message-ID"] = make_msgid(idstring=digest, domain="adx.notifications")
        mail["X-ADX-Template"] = message.template.value
        mail.set_content(message.text)
        return mail

    async def send(self, message: Message) -> None:
        try:
            await aiosmtplib.send(
                self._mail(message),
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password.get_secret_value() if self._password else None,
                use_tls=self._security is SmtpSecurity.TLS,
                start_tls=self._security is SmtpSecurity.STARTTLS,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise NotificationRejectedError("the mail server refused the recipient") from exc
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx is the server's final word; 4xx (greylisting, a full queue) is worth a retry.
            if 500 <= exc.code < 600:
                raise NotificationRejectedError(
                    f"the mail server refused the message ({exc.code})"
                ) from exc
            raise


class WebhookNotifier:
    """POSTs the rendered notification as JSON, signed with HMAC-SHA256 over the body."""

    name = "webhook"

    def __init__(self, settings: Settings) -> None:
        if settings.notify_webhook_url is None:
            raise ValueError("ADX_NOTIFY_WEBHOOK_URL is needed for webhook notifications")
        self._url = settings.notify_webhook_url
        self._secret = settings.notify_webhook_secret
        self._timeout = aiohttp.ClientTimeout(total=settings.notify_timeout_seconds)

    async def send(self, message: Message) -> None:
        body = json.dumps(
            {
                "key": message.key,
                "tenant_id": message.tenant_id,
                "template": message.template.value,
                "to": message.to,
                "subject": message.subject,
                "text": message.text,
            }
        ).encode()
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: message.key}
        if self._secret is not None:
            signature = hmac.new(self._secret.get_secret_value().encode(), body, hashlib.sha256)
            headers[SIGNATURE_HEADER] = f"sha256={signature.hexdigest()}"
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as session,
            session.post(self._url, data=body, headers=headers) as response,
        ):
            if response.status < 300:
                return
            if 400 <= response.status < 500 and response.status not in (408, 425, 429):
                raise NotificationRejectedError(f"the webhook refused it ({response.status})")
            response.raise_for_status()
            raise aiohttp.ClientError(f"the webhook answered {response.status}")


def notifier_from_settings(settings: Settings) -> Notifier:
    if settings.notify_provider is NotifyProvider.WEBHOOK:
        return WebhookNotifier(settings)
    return SmtpNotifier(settings)
