"""The ``anigenre`` command line. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Mapping, Sequence

from anigenre.config.discover import discover_settings
from anigenre.core.errors import AnigenreError, ConfigError, RetryableError
from anigenre.jobs.cli import (
    dataset_cmd,
    demo_cmd,
    jobs_cmd,
    models_cmd,
    predict_cmd,
    predictions_cmd,
    scrape_cmd,
    serve_cmd,
    server_cmd,
    web_cmd,
    worker_cmd,
)

_COMMANDS = (
    scrape_cmd,
    dataset_cmd,
    models_cmd,
    predict_cmd,
    predictions_cmd,
    jobs_cmd,
    worker_cmd,
    server_cmd,
    demo_cmd,
    web_cmd,
    serve_cmd,
)


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print one line that says what to do.
    Every option's default shows in ``--help``, and a mistyped choice gets a suggestion."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):
        # argparse reports unrecognized arguments from the top parser, which knows none of
        # the subcommand's options: report them from the subcommand that was reached.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf = getattr(parsed, "_leaf", self)
            leaf.error(_unrecognized(leaf, extras))
        return parsed

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        _show_default(action)
        return action

    def _check_value(self, action, value):
        # Subcommands and --backbone-style choices: the nearest name is usually what was meant.
        if action.choices is not None and value not in action.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in action.choices], n=1)
            if close:
                raise argparse.ArgumentError(
                    action, f"invalid choice: {value!r}; did you mean {close[0]!r}?"
                )
        super()._check_value(action, value)


def _unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """``unrecognized arguments: --top-kk 3; did you mean '--top-k'?``"""
    message = f"unrecognized arguments: {' '.join(extras)}"
    options = [o for a in parser._actions for o in a.option_strings]  # hidden ones too
    for extra in extras:
        flag = extra.split("=", 1)[0]
        close = (
            difflib.get_close_matches(flag, options, n=1, cutoff=0.75)
            if flag.startswith("--")
            else []
        )
        if close:
            return f"{message}; did you mean '{close[0]}'?"
    return message


def _show_default(action: argparse.Action) -> None:
    """Append ``(default: X)`` to an option's help. Not argparse's
    ArgumentDefaultsHelpFormatter: that prints ``(default: None)`` for options with no
    default, and nothing at all for options without help text."""
    if (
        not action.option_strings
        or any(action.default is skip for skip in (None, False, argparse.SUPPRESS))
        or action.help is argparse.SUPPRESS
        or "%(default)" in (action.help or "")
    ):
        return
    action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anigenre")
    except PackageNotFoundError:  # a checkout run in place, never pip-installed
        return "(version unknown: not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="anigenre", description="Predict anime genres from posters.")
    parser.add_argument("--version", action="version", version=f"anigenre {_version()}")
    parser.add_argument("--config", help="TOML settings file (default ./anigenre.toml if present)")
    parser.add_argument(
        "--data-dir",
        help="data directory, a path or s3://bucket/prefix (env ANIGENRE_DATA_DIR, default ./data)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar or lines (results and errors stay)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in _COMMANDS:
        module.register(sub)
    for leaf in _leaves(parser):
        # Also accepted after the subcommand (`anigenre scrape --data-dir DIR`); SUPPRESS
        # keeps an absent flag from overwriting one given before it.
        leaf.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        leaf.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        leaf.set_defaults(_leaf=leaf)  # whose options an unrecognized one is compared with
        leaf.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for a in subs for child in a.choices.values() for leaf in _leaves(child)]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = discover_settings(
            overrides={"data_dir": args.data_dir, **args.settings_overrides(args)},
            env=env,
            config_file=args.config,
        )
        return args.run(args, settings) or 0
    except ConfigError as exc:
        print(f"anigenre: error: {exc}", file=sys.stderr)
        return 2
    except RetryableError as exc:
        print(f"anigenre: error: {exc}; {exc.advice}", file=sys.stderr)
        return 1
    except AnigenreError as exc:
        print(f"anigenre: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Last resort for a file error no edge mapped: still one line, with the path.
        from anigenre.core.errors import StorageError

        print(f"anigenre: error: {StorageError.from_os(exc, action='use')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("anigenre: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
