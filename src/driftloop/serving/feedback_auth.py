"""Who may send labels: they drive the concept check and the retrain, so not anyone who can reach the server.

With ``DRIFTLOOP_FEEDBACK_TOKEN`` set, ``/feedback`` needs ``Authorization: Bearer <token>``. Without one, only a
server that nobody else can reach takes labels: bound to a loopback address and not behind a proxy that listens
on other addresses (a slot behind nginx is reached from anywhere nginx is).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from driftloop.core.addresses import is_loopback
from driftloop.errors import InputError
from driftloop.settings import Settings


@dataclass(frozen=True)
class FeedbackGate:
    """The rule for one server, decided once from its settings."""

    token: bytes | None
    open_without_token: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackGate:
        token = settings.feedback_token.get_secret_value().encode() if settings.feedback_token else None
        return cls(token, is_loopback(settings.serve_host) and not settings.behind_proxy)

    def check(self, authorization: str | None) -> None:
        """Raise the 401/403 a request without the right credential gets; nothing when it may send labels."""
        if self.token is None:
            if self.open_without_token:
                return
            raise InputError(
                403,
                "feedback_token_required",
                "this server is reachable from other hosts: labels need DRIFTLOOP_FEEDBACK_TOKEN set on the server "
                "and sent as Authorization: Bearer <token>",
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            raise InputError(401, "unauthorized", "labels need Authorization: Bearer <DRIFTLOOP_FEEDBACK_TOKEN>")
