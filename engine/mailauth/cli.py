"""`postroom dns-records DOMAIN` and `postroom dkim new|rotate|list|prune`: the admin side of mail authentication.

Like the other admin commands these open the data directory directly; a running server picks up new
keys with its next submitted message (the key store notices the changed selectors file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from engine.config import Config, load_config
from engine.mailauth.keys import KeyStore, Selector
from engine.mailauth.service import retention

EXIT_OK = 0
EXIT_MISMATCH = 2          # dns-records --check: something is missing or different


def add_arguments(subparsers: Any) -> None:
    """Adds `dns-records` and `dkim` to the top-level `postroom` parser (engine/cli.py calls this)."""
    p = subparsers.add_parser("dns-records", help="the DNS records a domain needs, checked against DNS now")
    p.add_argument("domain")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--check", action="store_true",
                   help=f"exit with status {EXIT_MISMATCH} unless every record is published as shown")
    p.set_defaults(handler=cmd_dns_records)

    p = subparsers.add_parser("dkim", help="DKIM signing keys (ed25519 and RSA) for local domains")
    actions = p.add_subparsers(dest="dkim_action", metavar="ACTION", required=True)
    q = actions.add_parser("new", help="make the first key pair for a domain and show its DNS records")
    q.add_argument("domain")
    q = actions.add_parser("rotate", help="make a new key pair; the old one stays published until its "
                                          "signatures can no longer be checked")
    q.add_argument("domain")
    q = actions.add_parser("list", help="list selectors, their state and how long they stay published")
    q.add_argument("domain", nargs="?")
    q.add_argument("--format", choices=("table", "json"), default="table")
    q = actions.add_parser("prune", help="forget retired keys whose time in DNS is over")
    q.add_argument("domain", nargs="?")
    p.set_defaults(handler=cmd_dkim)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else ""


def _check_local(config: Config, domain: str) -> str:
    from engine.auth import Directory, names

    name = names.domain(domain)
    directory = Directory(config.state_db)
    try:
        if not directory.is_local_domain(name):
            raise ValueError(f"{name} is not a local domain (add it with `postroom domain add {name}`)")
    finally:
        directory.close()
    return name


def _show_records(selectors: list[Selector], out: TextIO) -> None:
    print("Publish these TXT records:", file=out)
    for sel in selectors:
        print(f"  {sel.dns_name}.  TXT  \"{sel.dns_value}\"", file=out)


def cmd_dkim(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    config = load_config(args.data_dir)
    store = KeyStore(config.data_dir)
    action = args.dkim_action
    if action == "new":
        domain = _check_local(config, args.domain)
        made = store.new(domain)
        print(f"made DKIM keys for {domain}: {', '.join(s.selector for s in made)}", file=out)
        _show_records(made, out)
    elif action == "rotate":
        domain = _check_local(config, args.domain)
        made = store.rotate(domain, retention(config))
        print(f"new DKIM keys for {domain}: {', '.join(s.selector for s in made)}", file=out)
        _show_records(made, out)
        for sel in store.published(domain):
            if sel.state != "active":
                print(f"keep {sel.dns_name} published until {_when(sel.publish_until)}", file=out)
    elif action == "list":
        domains = [args.domain] if args.domain else store.domains()
        rows = [s for d in domains for s in store.selectors(d)]
        if args.format == "json":
            print(json.dumps([{"domain": s.domain, "selector": s.selector, "algorithm": s.algorithm,
                               "state": s.state, "created": s.created, "publish_until": s.publish_until,
                               "dns_name": s.dns_name, "dns_value": s.dns_value} for s in rows], indent=2),
                  file=out)
        else:
            for s in rows:
                until = f"  published until {_when(s.publish_until)}" if s.publish_until else ""
                print(f"{s.domain:24} {s.selector:16} {s.algorithm:8} {s.state:8} made {_when(s.created)}{until}",
                      file=out)
    else:
        domains = [args.domain] if args.domain else store.domains()
        now = time.time()
        for domain in domains:
            for sel in store.prune(domain, now):
                print(f"removed {sel.dns_name} (you may delete its DNS record now)", file=out)
    return EXIT_OK


def cmd_dns_records(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from engine.dns_records import PRESENT, dns_records

    out = out or sys.stdout
    config = load_config(args.data_dir)
    records = asyncio.run(dns_records(config, args.domain))
    if args.format == "json":
        print(json.dumps([{"kind": r.kind, "name": r.name, "value": r.value, "found": r.found,
                           "status": r.status, "purpose": r.purpose} for r in records], indent=2), file=out)
    else:
        for r in records:
            print(f"{r.status.upper():9} {r.kind:5} {r.name}", file=out)
            print(f"          want:  {r.value}", file=out)
            if r.found and r.status != PRESENT:
                print(f"          found: {r.found}", file=out)
        if "." not in config.hostname:
            # The MX target and A record above are only as good as the name the server goes by.
            print(f"note: this server's hostname {config.hostname!r} is not a fully qualified name; set "
                  f"hostname = \"mail.{args.domain}\" (or your server's name) in postroom.toml", file=out)
    if args.check and any(r.status != PRESENT for r in records):
        return EXIT_MISMATCH
    return EXIT_OK
