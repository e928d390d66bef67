"""TLS certificates for every listener: load the configured pair, or make a self-signed one on first start.

Layout: `<data>/tls/selfsigned.crt` and `<data>/tls/selfsigned.key` (0600) when `[tls]` names no files.
"""

from engine.tls.certs import CertificateError, ensure_certificate, server_context

__all__ = ["CertificateError", "ensure_certificate", "server_context"]
