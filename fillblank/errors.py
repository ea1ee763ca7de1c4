"""User-facing errors: one clear line, exit status 2, never a stack trace.

Library code raises `UserError` for anything the user can fix (a bad path, a bad
parameter, a malformed input file). Entry points wrap `main` in `run`, which prints the
message as `error: ...` on stderr, and does the same for what the system refuses (`OSError`:
a read-only folder, a full disk), naming the path. Bugs still raise normally, with their traceback.
"""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake in the user's input or parameters; the message names what and where."""


def run(main: Callable[[], object]) -> None:
    """Call `main`, turning a `UserError`, an `OSError` or Ctrl-C into one line and a non-zero exit."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        print(f"error: {system_error(error)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def system_error(error: OSError) -> str:
    """What the system refused, and where: "data/fills/shapes: Permission denied"."""
    if error.strerror is None:  # pyarrow's and h5py's carry the path and the reason in their text
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    paths = " -> ".join(str(path) for path in (error.filename, error.filename2) if path)
    return f"{paths}: {error.strerror}" if paths else error.strerror
