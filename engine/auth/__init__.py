"""Who may receive and who may log in: domains, accounts, aliases and password checks, plus the SASL
mechanisms and the auth-failure limiter that SMTP, IMAP and POP3 share.

The directory lives in `state.sqlite` (tables `auth_meta`, `auth_domains`, `auth_accounts`,
`auth_aliases`; passwords only as argon2id hashes) and is read afresh on every lookup so the CLI's
changes take effect at once.
"""

from engine.interfaces import Account, Alias

from . import sasl
from .directory import MAX_ALIAS_DEPTH, Directory
from .names import DirectoryError
from .ratelimit import AuthFailureLimiter
from .sasl import MECHANISMS, Challenge, Credentials, SaslError, SaslExchange

__all__ = [
    "MAX_ALIAS_DEPTH",
    "MECHANISMS",
    "Account",
    "Alias",
    "AuthFailureLimiter",
    "Challenge",
    "Credentials",
    "Directory",
    "DirectoryError",
    "SaslError",
    "SaslExchange",
    "sasl",
]
