"""User-facing errors: one clear line, exit status 2, never a stack trace.

Library code raises `UserError` for anything the user can fix (a bad path, a bad
parameter, a malformed input file). Entry points wrap `main` in `run`, which prints the
message as `error: ...` on stderr. Bugs still raise normally, with their traceback.
"""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake in the user's input or parameters; the message names what and where."""


def run(main: Callable[[], object]) -> None:
    """Call `main`, turning a `UserError` or Ctrl-C into one line and a non-zero exit."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
