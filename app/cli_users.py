"""Account commands: `users add|list|remove|passwd` and `tokens create|list|revoke`, run on the server's machine
(whoever can run them can read the job store anyway), and `--token` for the job commands.

Passwords are asked for twice at a terminal, or read from stdin (`--password-stdin`, for scripts); tokens are
printed once and only their hash is kept.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

TOKEN_ENV = "ADAPTERLAB_TOKEN"


def add_token_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=None, help=f"act as the user of this API token (or set {TOKEN_ENV}); "
                   "without one, as the machine's admin")


def actor(args: argparse.Namespace):
    """The Actor a job command acts as: its token's user, or the machine itself (admin) without one."""
    from engine.errors import ConfigError
    from worker import users
    from worker.access import MACHINE

    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    if not token:
        return MACHINE
    found = users.token_actor(token)
    if found is None:
        raise ConfigError("That API token is not valid (mistyped, or revoked): create one with "
                          "`adapterlab tokens create --user NAME`.")
    return found


def _password(args: argparse.Namespace) -> str:
    from engine.errors import ConfigError

    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise ConfigError("The two passwords differ; nothing was changed.")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from worker import users

    if args.action == "add":
        first = not users.accounts_enabled()
        user = users.add(args.name, _password(args), admin=args.admin)
        print(f"added {'admin ' if user['admin'] else ''}user {user['name']}")
        if first:
            print("This is the first user: the web app now asks for a login. Restart `adapterlab serve` if it is "
                  "running; jobs made before stay with the admins until an admin shares them.", file=sys.stderr)
    elif args.action == "list":
        found = users.list_users()
        if args.json:
            print(json.dumps(found))
        elif not found:
            print("no users: the web app has no login (`adapterlab users add NAME` adds one)")
        for user in [] if args.json else found:
            print(f"{user['name']:<24} {'admin' if user['admin'] else 'user':<6} {user['tokens']} token(s), "
                  f"since {user['created_at']}")
    elif args.action == "remove":
        kept = users.remove(args.name)
        print(f"removed user {args.name} and their tokens; their {kept} job(s) stay, kept by the admins")
    else:
        users.set_password(args.name, _password(args))
        print(f"changed the password of {args.name}")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    from worker import users

    if args.action == "create":
        token = users.create_token(args.user)
        if args.json:
            print(json.dumps(token))
        else:
            print(token["token"])
            print(f"The token of {token['user']} (id {token['id']}): it is shown only now. Send it as "
                  "`Authorization: Bearer TOKEN`.", file=sys.stderr)
    elif args.action == "list":
        found = users.list_tokens(args.user)
        if args.json:
            print(json.dumps(found))
        for token in [] if args.json else found:
            print(f"{token['id']}  {token['user']:<24} created {token['created_at']}, last used "
                  f"{token['last_used_at'] or 'never'}")
    else:
        print(f"revoked token {users.revoke_token(args.token)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("users", help="the web app's accounts: add, list, remove, passwd")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("add", help="add a user (asks for a password, or reads it from stdin)")
    a.add_argument("name")
    a.add_argument("--admin", action="store_true", help="may see and change every job")
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    a = actions.add_parser("list", help="list the users")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("remove", help="remove a user and their tokens (their jobs stay, with the admins)")
    a.add_argument("name")
    a = actions.add_parser("passwd", help="change a user's password")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("tokens", help="API tokens for scripts: create, list, revoke")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("create", help="a new token for a user, printed once")
    a.add_argument("--user", required=True)
    a.add_argument("--json", action="store_true", help="print {\"token\", \"id\", \"user\"}")
    a = actions.add_parser("list", help="the tokens (ids only) and when they were last used")
    a.add_argument("--user")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("revoke", help="revoke a token by its id or the token itself")
    a.add_argument("token", metavar="TOKEN_OR_ID")
    p.set_defaults(func=cmd_tokens)
