"""`postroom`: the admin command line, a third client of the same engine API as the GUI and the tests.

Admin commands open the data directory directly and work whether or not a server runs; a running server
sees their effect within a second (the directory is read afresh on every lookup, the queue is polled).
Every error is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine import __version__
from engine.config import ConfigError, ListenAddress, default_data_dir, parse_listen, parse_size

EXIT_OK = 0
EXIT_ERROR = 1


class CLIError(Exception):
    """A one-line message for the person at the terminal."""


Handler = Callable[[argparse.Namespace], int]


def _engine(args: argparse.Namespace) -> Any:
    from engine.runtime import Engine

    engine = Engine(args.data_dir)
    engine.open()
    return engine


def _read_password(args: argparse.Namespace, prompt: str = "Password: ") -> str:
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CLIError("no terminal to ask for a password: use --password-stdin")
        password = getpass.getpass(prompt)
        if getpass.getpass("Repeat password: ") != password:
            raise CLIError("the two passwords differ")
    if not password:
        raise CLIError("the password is empty")
    return password


# --- serve ----------------------------------------------------------------------------------------------

def _parse_listen_overrides(values: Sequence[str]) -> dict[str, ListenAddress | None]:
    from engine.config import STANDARD_LISTEN

    overrides: dict[str, ListenAddress | None] = {}
    for value in values:
        service, sep, address = value.partition("=")
        service = service.strip().lower()
        if not sep or service not in STANDARD_LISTEN:
            raise CLIError(f"--listen {value!r}: expected SERVICE=HOST:PORT with SERVICE one of "
                           f"{', '.join(STANDARD_LISTEN)}")
        try:
            overrides[service] = parse_listen(address)
        except ValueError as exc:
            raise CLIError(f"--listen {value!r}: {exc}") from None
    return overrides


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from engine.eventloop import loop_name
    from engine.runtime import Engine, EngineError

    listen = _parse_listen_overrides(args.listen) if args.listen else None
    engine = Engine(args.data_dir, listen=listen)

    def started(states: list[Any]) -> None:
        for state in states:
            if state.state != "off":
                extra = f" ({state.reason})" if state.reason else ""
                print(f"{state.service:12} {state.address:24} {state.state}{extra}", flush=True)
        loop = loop_name(asyncio.get_running_loop())      # called on the engine's loop, once it serves
        print(f"postroom {__version__} serving mail for {engine.config.hostname} on {loop}; "
              f"data in {args.data_dir}", flush=True)

    try:
        engine.serve_forever(on_started=started)
    except EngineError as exc:
        raise CLIError(str(exc)) from None
    # As Postfix's "terminating on signal": whoever reads the service log sees the stop was an orderly one.
    print("postroom stopped: sessions finished, listeners and databases closed", flush=True)
    return EXIT_OK


# --- domains, accounts, aliases -------------------------------------------------------------------------

def cmd_domain(args: argparse.Namespace) -> int:
    engine = _engine(args)
    d = engine.directory
    if args.action == "add":
        d.add_domain(args.name)
        print(f"added domain {args.name.lower()}")
    elif args.action == "remove":
        d.remove_domain(args.name, force=args.force)
        print(f"removed domain {args.name.lower()}")
    else:
        for name in d.list_domains():
            print(name)
    return EXIT_OK


def cmd_account(args: argparse.Namespace) -> int:
    engine = _engine(args)
    d = engine.directory
    if args.action == "add":
        quota = parse_size(args.quota) if args.quota else None
        d.check_new_account(args.address)       # before the password prompt, not after it
        password = _read_password(args)
        d.add_account(args.address, password, quota=quota)
        account = d.get_account(args.address)
        engine.store.create_account(account.address)
        print(f"added account {account.address}")
    elif args.action == "passwd":
        if d.get_account(args.address) is None:
            raise CLIError(f"no account {args.address}")
        d.set_password(args.address, _read_password(args, "New password: "))
        print(f"password changed for {args.address}")
    elif args.action == "remove":
        account = d.get_account(args.address)
        d.remove_account(args.address)
        if account is not None:
            engine.store.remove_account(account.address, delete_files=args.delete_mail)
        kept = "" if args.delete_mail else " (its mail stays on disk)"
        print(f"removed account {args.address}{kept}")
    elif args.action in ("disable", "enable"):
        d.set_enabled(args.address, args.action == "enable")
        print(f"{args.action}d account {args.address}")
    else:
        accounts = d.list_accounts(args.domain)
        if args.format == "json":
            print(json.dumps([{"address": a.address, "enabled": a.enabled, "quota": a.quota} for a in accounts],
                             indent=2))
        else:
            for a in accounts:
                flags = "" if a.enabled else "  (disabled)"
                limit = f"  quota {a.quota}" if a.quota else ""
                print(f"{a.address}{limit}{flags}")
    return EXIT_OK


def cmd_alias(args: argparse.Namespace) -> int:
    engine = _engine(args)
    d = engine.directory
    if args.action == "add":
        d.add_alias(args.source, list(args.targets))
        print(f"added alias {args.source} -> {', '.join(args.targets)}")
    elif args.action == "remove":
        d.remove_alias(args.source)
        print(f"removed alias {args.source}")
    else:
        for alias in d.list_aliases():
            print(f"{alias.source} -> {', '.join(alias.targets)}")
    return EXIT_OK


def _no_display() -> bool:
    """True on a Linux/BSD box with no X or Wayland session and no Qt platform chosen: Qt would abort
    there with its own plugin message and a core dump, so the CLI says what to do instead."""
    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_gui(args: argparse.Namespace) -> int:
    if _no_display():
        raise CLIError("no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); "
                       "`postroom serve` runs the server headless")
    try:
        app = importlib.import_module("desktop.app")
    except ImportError as exc:
        raise CLIError(f"the desktop app cannot start ({exc}); `postroom serve` runs the server headless") from None
    result: int = app.main(args.data_dir)
    return result


# --- parser ---------------------------------------------------------------------------------------------

BUILTIN_COMMANDS = ("serve", "domain", "account", "alias")
# Commands other packages add, and the module that adds each.  Only the module of the command named is
# imported: each costs start-up time (`postroom queue list` need not load DKIM and the desktop).  A word
# not listed here loads them all, so a command added elsewhere works before this table knows it.
EXTERNAL_COMMANDS: dict[str, str] = {
    "queue": "engine.queue.cli",
    "log": "engine.log.cli",
    "dns-records": "engine.mailauth.cli",
    "dkim": "engine.mailauth.cli",
    "licences": "desktop.install",
}
EXTERNAL_MODULES = tuple(dict.fromkeys(EXTERNAL_COMMANDS.values()))     # each once, in table order
_GLOBAL_WITH_VALUE = ("--data-dir",)


def command_word(argv: Sequence[str]) -> str | None:
    """The command named on a command line (the first word that is not a global option or its value)."""
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return words[i + 1] if i + 1 < len(words) else None
        if word in _GLOBAL_WITH_VALUE:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return word
    return None


def command_modules(argv: Sequence[str] | None) -> tuple[str, ...]:
    """Which command-adding modules to import for this command line (all of them for help or no command)."""
    if argv is None:
        return EXTERNAL_MODULES
    word = command_word(argv)
    if word in BUILTIN_COMMANDS:
        return ()
    if word in EXTERNAL_COMMANDS:
        return (EXTERNAL_COMMANDS[word],)
    return EXTERNAL_MODULES


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (given the command line) one with only the commands that line can use."""
    parser = argparse.ArgumentParser(
        prog="postroom",
        description="Postroom mail server. With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"postroom {__version__}")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (default: $POSTROOM_HOME or the platform's user data dir)")
    parser.add_argument("--install-desktop-entry", action="store_true",
                        help="add Postroom to your application menu (~/.local/share) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the mail server headless until SIGTERM/SIGINT")
    p.add_argument("--listen", action="append", default=[], metavar="SERVICE=HOST:PORT",
                   help="listen address for a service (smtp, submission, submissions, imap, imaps, pop3, pop3s);"
                        " given at least once, it replaces the [listen] settings: only services named start."
                        " An empty address (smtp=) turns a service off")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("domain", help="local mail domains")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = dsub.add_parser("add", help="accept mail for a domain")
    q.add_argument("name")
    q = dsub.add_parser("remove", help="stop accepting mail for a domain")
    q.add_argument("name")
    q.add_argument("--force", action="store_true", help="also remove its accounts and aliases")
    dsub.add_parser("list", help="list local domains")
    p.set_defaults(handler=cmd_domain)

    p = sub.add_parser("account", help="mail accounts (user@domain)")
    asub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = asub.add_parser("add", help="create an account and its mailbox")
    q.add_argument("address")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    q.add_argument("--quota", help="mailbox size limit, e.g. 2GiB")
    q = asub.add_parser("passwd", help="set an account's password")
    q.add_argument("address")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    q = asub.add_parser("remove", help="remove an account (its mail stays on disk unless --delete-mail)")
    q.add_argument("address")
    q.add_argument("--delete-mail", action="store_true", help="also delete the account's mail files")
    for action in ("disable", "enable"):
        q = asub.add_parser(action, help=f"{action} receiving and logging in")
        q.add_argument("address")
    q = asub.add_parser("list", help="list accounts")
    q.add_argument("domain", nargs="?")
    q.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=cmd_account)

    p = sub.add_parser("alias", help="aliases and catch-alls (@domain)")
    lsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = lsub.add_parser("add", help="deliver mail for SOURCE to TARGET(s)")
    q.add_argument("source", help="user@domain, or @domain for the catch-all")
    q.add_argument("targets", nargs="+", metavar="TARGET")
    q = lsub.add_parser("remove", help="remove an alias")
    q.add_argument("source")
    lsub.add_parser("list", help="list aliases")
    p.set_defaults(handler=cmd_alias)

    # Commands owned by other packages register themselves when those packages exist.
    for module in command_modules(argv):
        try:
            importlib.import_module(module).add_arguments(sub)
        except ImportError:
            continue
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [CLIError, ConfigError, ValueError, OSError]
    try:
        from engine.runtime import EngineError

        errors.append(EngineError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("POSTROOM_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["__delivery-agent"]:
        # The bundle's delivery agent process (engine/store/agent.py): a frozen program has no `-c`.
        from engine.store.agent import agent_main

        return agent_main(words[1:])
    parser = build_parser(words)
    args = parser.parse_args(words)
    args.data_dir = (args.data_dir or default_data_dir()).expanduser()
    handler: Handler = getattr(args, "handler", cmd_gui)
    if args.install_desktop_entry:
        handler = importlib.import_module("desktop.install").cmd_install_desktop_entry
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except _known_errors() as exc:
        print(f"postroom: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
