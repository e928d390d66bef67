"""Who may send what to whom through one listener: the relay rules, kept out of the protocol code.

The MX ("smtp") takes mail for local domains from anyone and relays for nobody but authenticated users;
the submission roles ("submission", "submissions") take nothing before AUTH (RFC 6409 §4.3) and let a
user send only as their own addresses.  Every refusal is a `Reply` from `codes` plus a short reason for
the delivery log.  The directory is asked afresh each time, so the CLI's changes apply to the next RCPT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.events import DirectoryChanged, Event
from engine.services import Services
from engine.smtp import codes
from engine.smtp.addresses import Address, Path, relay_trick
from engine.smtp.codes import Reply

ROLES = ("smtp", "submission", "submissions")


@dataclass(frozen=True)
class Refusal:
    reply: Reply
    reason: str                  # for the delivery log, e.g. "relay denied"


@dataclass(frozen=True)
class Route:
    """Where an accepted recipient goes: local accounts (store) and remote addresses (outbound queue)."""

    local: tuple[str, ...]
    remote: tuple[str, ...]


class DirectoryView:
    """The directory's routing answers, remembered until the directory changes.

    Each RCPT would otherwise cost an IDNA conversion and several queries twice over.  Changes made by
    another process move `data_version()`; changes made through this process's Directory are announced
    as `DirectoryChanged` on the bus; either empties the memory before the next answer.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, services: Services) -> None:
        self._directory = services.directory
        self._version: int | None = None
        self._stale = True
        self._domains: dict[str, bool] = {}
        self._expansions: dict[str, tuple[list[str], list[str]]] = {}
        self._quotas: dict[str, int | None] = {}
        self._events = services.events
        self._unsubscribe: Callable[[], None] | None = None

    def _on_event(self, event: Event) -> None:
        if isinstance(event, DirectoryChanged):
            self._stale = True

    def refresh(self) -> None:
        """Forgets everything if the directory changed since the last answers (one cheap query)."""
        if self._unsubscribe is None:
            self._unsubscribe = self._events.subscribe(self._on_event)
            self._stale = True
        version = self._directory.data_version()
        if self._stale or version != self._version or len(self._expansions) > self.MAX_ENTRIES:
            self._stale = False
            self._version = version
            self._domains.clear()
            self._expansions.clear()
            self._quotas.clear()

    def is_local_domain(self, domain: str) -> bool:
        """As engine.auth.Directory.is_local_domain, as of the last `refresh()`."""
        known = self._domains.get(domain)
        if known is None:
            known = self._domains[domain] = bool(self._directory.is_local_domain(domain))
        return known

    def expand(self, address: str) -> tuple[list[str], list[str]]:
        """(local accounts, remote addresses) as engine.auth.Directory.expand, as of the last `refresh()`;
        callers must not mutate the lists."""
        known = self._expansions.get(address)
        if known is None:
            local, remote = self._directory.expand(address)
            known = self._expansions[address] = (list(local), list(remote))
        return known

    def quota(self, account: str) -> int | None:
        """The account's quota in octets (None: unlimited), as of the last `refresh()`."""
        if account not in self._quotas:
            found = self._directory.get_account(account)
            self._quotas[account] = found.quota if found is not None else None
        return self._quotas[account]

    def close(self) -> None:
        """Stops listening to the bus (and forgets everything: the next use starts afresh)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class Policy:
    def __init__(self, services: Services, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown SMTP role {role!r} (one of {', '.join(ROLES)})")
        self.services = services
        self.role = role
        self.directory = DirectoryView(services)

    def close(self) -> None:
        self.directory.close()

    @property
    def submission(self) -> bool:
        return self.role != "smtp"

    def auth_offered(self, tls: bool) -> bool:
        """AUTH only under TLS, on every role (RFC 4954 §4: no plaintext passwords over a clear channel)."""
        return tls

    def check_sender(self, authenticated_as: str | None, path: Path) -> Refusal | None:
        """MAIL FROM: submission needs a login first; a logged-in user may use only their addresses."""
        if self.submission and authenticated_as is None:
            return Refusal(codes.AUTH_REQUIRED, "authentication required")
        if (authenticated_as is not None and path.address is not None
                and not self.services.directory.may_send_as(authenticated_as, path.address.plain)):
            return Refusal(codes.SENDER_NOT_OWNED.with_text(
                f"Sender address <{path.address}> not owned by user {authenticated_as}"),
                "sender not owned by authenticated user")
        return None

    def route_recipient(self, authenticated_as: str | None, address: Address) -> Route | Refusal:
        """RCPT TO: where the recipient goes, or why it is refused.

        A source route was already dropped by the parser (RFC 5321 §4.1.1.3): only the final mailbox
        decides, so `<@our.domain:victim@elsewhere>` is simply a remote recipient.
        """
        directory = self.directory
        directory.refresh()
        if not address.domain:                               # <Postmaster>, RFC 5321 §4.1.1.3
            local, remote = directory.expand("postmaster")
            return self._found(address, list(local), list(remote))
        is_local = directory.is_local_domain(address.domain)
        if not is_local:
            if authenticated_as is None:
                return Refusal(codes.RELAY_DENIED.with_text(
                    f"Relay access denied for <{address}>"), "relay denied")
            return self._remote_route((str(address),))
        trick = relay_trick(address)
        if trick is not None:
            return Refusal(codes.RELAY_TRICK.with_text(f"Address <{address}> uses a {trick}; not accepted"),
                           f"relay trick ({trick})")
        local, remote = directory.expand(address.plain)
        return self._found(address, list(local), list(remote))

    def quotas(self, accounts: list[str]) -> dict[str, int]:
        """Quotas of the accounts that have one, for the store to enforce at delivery (as of the
        transaction's last RCPT, which refreshed the directory view)."""
        out: dict[str, int] = {}
        for account in accounts:
            limit = self.directory.quota(account)
            if limit is not None:
                out[account] = limit
        return out

    def _found(self, address: Address, local: list[str], remote: list[str]) -> Route | Refusal:
        if not local and not remote:
            return Refusal(codes.NO_SUCH_USER.with_text(f"<{address}>: no such user here"), "unknown user")
        if remote:
            route = self._remote_route(tuple(remote))
            if isinstance(route, Refusal):
                return route
        return Route(tuple(local), tuple(remote))

    def _remote_route(self, remote: tuple[str, ...]) -> Route | Refusal:
        if self.services.outbound is None:
            # Never accept what we could not pass on: the client keeps it and retries (RFC 5321 §4.2.5).
            return Refusal(codes.OUTBOUND_UNAVAILABLE, "outbound delivery not available")
        return Route((), remote)
