"""Importing the library changes nothing in the process (DESIGN.md: no side effects on import)."""

import json
import subprocess
import sys


def test_importing_fillblank_leaves_the_environment_as_it_was():
    # A fresh interpreter: this one has imported fillblank already.
    code = (
        "import json, os, torch; before = dict(os.environ); threads = torch.get_num_threads()\n"
        "import fillblank, fillblank.decode, fillblank.train, fillblank.cli, fillblank.regression\n"
        "changed = sorted(k for k in before.keys() | os.environ.keys() if before.get(k) != os.environ.get(k))\n"
        "print(json.dumps([changed, threads == torch.get_num_threads()]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [[], True]
