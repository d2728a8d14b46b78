"""Credentials the sandboxes accept, and the Secrets Manager shapes Herald reads them in."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_X509_URL = "https://www.googleapis.com/robot/v1/metadata/x509"


def _rsa_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _ec_private_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_rsa_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key


def load_ec_private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("expected an EC P-256 private key")
    return key


@dataclass(frozen=True)
class PusherCredentials:
    app_id: str
    key: str
    secret: str


@dataclass(frozen=True)
class SendGridCredentials:
    api_key: str
    event_webhook_private_key_pem: str = field(repr=False)

    @cached_property
    def event_webhook_private_key(self) -> ec.EllipticCurvePrivateKey:
        return load_ec_private_key(self.event_webhook_private_key_pem)

    @property
    def event_webhook_public_key(self) -> str:
        """Base64 DER (SubjectPublicKeyInfo): what SendGrid shows as the verification key."""
        der = self.event_webhook_private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()


@dataclass(frozen=True)
class TwilioCredentials:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str = "+15005550006"
    messaging_service_sid: str = ""


@dataclass(frozen=True)
class FcmCredentials:
    project_id: str
    service_account: dict[str, Any] = field(repr=False)

    @property
    def client_email(self) -> str:
        return str(self.service_account["client_email"])

    @property
    def token_uri(self) -> str:
        return str(self.service_account["token_uri"])

    @cached_property
    def public_key(self) -> rsa.RSAPublicKey:
        return load_rsa_private_key(self.service_account["private_key"]).public_key()


@dataclass(frozen=True)
class JwtIssuerCredentials:
    private_key_pem: str = field(repr=False)
    kid: str
    issuer: str
    audience: str

    @cached_property
    def private_key(self) -> rsa.RSAPrivateKey:
        return load_rsa_private_key(self.private_key_pem)


def service_account_info(project_id: str, token_uri: str, private_key_pem: str) -> dict[str, Any]:
    """A service-account JSON in Google's format, with a real key and `token_uri` on the sandbox."""
    client_id = str(secrets.randbelow(10**21)).rjust(21, "1")
    email = f"firebase-adminsdk-{secrets.token_hex(3)[:5]}@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": private_key_pem,
        "client_email": email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": GOOGLE_CERTS_URL,
        "client_x509_cert_url": f"{GOOGLE_X509_URL}/{email.replace('@', '%40')}",
        "universe_domain": "googleapis.com",
    }


@dataclass(frozen=True)
class SandboxCredentials:
    """Everything the sandboxes check, bound to the base URL they are served on."""

    base_url: str
    pusher: PusherCredentials
    sendgrid: SendGridCredentials
    twilio: TwilioCredentials
    fcm: FcmCredentials
    jwt: JwtIssuerCredentials
    receivers: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def generate(
        cls,
        base_url: str,
        *,
        receivers: Iterable[str] = ("default",),
        fcm_project_id: str = "herald-local",
        fcm_private_key_pem: str | None = None,
        jwt_private_key_pem: str | None = None,
        jwt_audience: str = "herald-api",
        sendgrid_private_key_pem: str | None = None,
    ) -> SandboxCredentials:
        """Fresh random credentials (real RSA/EC keys unless given) for a host at `base_url`."""
        base_url = base_url.rstrip("/")
        sendgrid_key = sendgrid_private_key_pem or _ec_private_pem()
        load_ec_private_key(sendgrid_key)
        return cls(
            base_url=base_url,
            pusher=PusherCredentials(
                app_id=str(1_000_000 + secrets.randbelow(9_000_000)),
                key=secrets.token_hex(10),
                secret=secrets.token_hex(10),
            ),
            sendgrid=SendGridCredentials(
                api_key=f"SG.{secrets.token_urlsafe(16)[:22]}.{secrets.token_urlsafe(32)[:43]}",
                event_webhook_private_key_pem=sendgrid_key,
            ),
            twilio=TwilioCredentials(
                account_sid="AC" + secrets.token_hex(16),
                auth_token=secrets.token_hex(16),
                from_number="+15005550006",
                messaging_service_sid="MG" + secrets.token_hex(16),
            ),
            fcm=FcmCredentials(
                project_id=fcm_project_id,
                service_account=service_account_info(
                    fcm_project_id, f"{base_url}/token", fcm_private_key_pem or _rsa_private_pem()
                ),
            ),
            jwt=JwtIssuerCredentials(
                private_key_pem=jwt_private_key_pem or _rsa_private_pem(),
                kid=secrets.token_hex(8),
                issuer=base_url,
                audience=jwt_audience,
            ),
            receivers={name: "whsec_" + secrets.token_hex(24) for name in receivers},
        )

    @property
    def fcm_url(self) -> str:
        """The FCM v1 send URL on the sandbox (a value for `_MessagingService.FCM_URL`)."""
        return f"{self.base_url}/v1/projects/{self.fcm.project_id}/messages:send"

    def secrets(self) -> dict[str, dict[str, Any]]:
        """The JSON held by Herald's per-provider Secrets Manager secrets, aimed at this host."""
        parts = urlsplit(self.base_url)
        return {
            "sendgrid": {"api_key": self.sendgrid.api_key, "host": self.base_url},
            "twilio": {
                "account_sid": self.twilio.account_sid,
                "auth_token": self.twilio.auth_token,
                "from_number": self.twilio.from_number,
                "messaging_service_sid": self.twilio.messaging_service_sid,
                "api_base": self.base_url,
            },
            "fcm": {"service_account": dict(self.fcm.service_account), "fcm_url": self.fcm_url},
            "pusher": {
                "app_id": self.pusher.app_id,
                "key": self.pusher.key,
                "secret": self.pusher.secret,
                "host": parts.hostname or "127.0.0.1",
                "port": parts.port or (443 if parts.scheme == "https" else 80),
                "ssl": False,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, private keys included (for `from_dict` and for the CLI's JSON)."""
        return {
            "base_url": self.base_url,
            "pusher": asdict(self.pusher),
            "sendgrid": {
                "api_key": self.sendgrid.api_key,
                "event_webhook_private_key_pem": self.sendgrid.event_webhook_private_key_pem,
                "event_webhook_public_key": self.sendgrid.event_webhook_public_key,
            },
            "twilio": asdict(self.twilio),
            "fcm": {"project_id": self.fcm.project_id, "service_account": dict(self.fcm.service_account)},
            "jwt": {
                "private_key_pem": self.jwt.private_key_pem,
                "kid": self.jwt.kid,
                "issuer": self.jwt.issuer,
                "audience": self.jwt.audience,
            },
            "receivers": dict(self.receivers),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxCredentials:
        sendgrid = dict(data["sendgrid"])
        sendgrid.pop("event_webhook_public_key", None)
        return cls(
            base_url=data["base_url"].rstrip("/"),
            pusher=PusherCredentials(**data["pusher"]),
            sendgrid=SendGridCredentials(**sendgrid),
            twilio=TwilioCredentials(**data["twilio"]),
            fcm=FcmCredentials(**data["fcm"]),
            jwt=JwtIssuerCredentials(**data["jwt"]),
            receivers=dict(data.get("receivers", {})),
        )
