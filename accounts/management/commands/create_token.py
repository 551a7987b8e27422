"""`manage.py create_token <username>`: a new personal API token, printed once on the last line."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.tokens import token_create, user_by_name


class Command(BaseCommand):
    help = "Create a personal API token for a user (AUTH_MODE=django). The token is shown only once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label to tell tokens apart in the admin")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_by_name(options["username"])
        except get_user_model().DoesNotExist as exc:
            raise CommandError(
                f"No user {options['username']!r} (create one with `manage.py createsuperuser`)."
            ) from exc
        token, raw = token_create(user=user, name=options["name"])
        self.stderr.write(
            f"Token {token.prefix}… for {user}; keep it secret, it is not stored and cannot be shown again:"
        )
        self.stdout.write(raw)
