"""``manage.py import_config fleet.yaml [--dry-run]``: show the diff and apply it."""

import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import ParseError

from api.fleet_config import ConfigInvalid, import_config
from api.parsers import MAX_BODY_BYTES, load_yaml


class Command(BaseCommand):
    help = "Apply a fleet configuration file (YAML or JSON) idempotently, showing the diff."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", help="The file; - reads standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Show the diff, change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        document = self.read(options["path"])
        try:
            result = import_config(document, dry_run=options["dry_run"])
        except ConfigInvalid as exc:
            for path, messages in exc.errors.items():
                for message in messages:
                    self.stderr.write(f"{path}: {message}")
            raise CommandError("The configuration is invalid; nothing was changed.") from exc
        if result.changes:
            self.stdout.write(result.diff())
        self.stdout.write(result.summary)

    def read(self, path: str) -> Any:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
        if len(text.encode()) > MAX_BODY_BYTES * 10:
            raise CommandError(f"{path} is too large for a fleet configuration.")
        try:
            # YAML is a superset of JSON, so one loader reads both.
            return load_yaml(text)
        except ParseError as exc:
            raise CommandError(str(exc.detail)) from exc
