"""`make test`'s two pytest runs side by side: the whole suite, and the
integration suite again with its daemons on PostgreSQL
(GOLEMD_TEST_STORE=postgresql, tests/pg.py). They mostly wait on daemons,
workers and sockets, so on two cores the pair takes little longer than the
first alone. The first run's output streams as it goes; the second's is
printed when it ends. Exits non-zero if either failed.

    python -m tests.run [PYTEST ARGS...]    # the args go to the first run
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def main() -> int:
    env = {**os.environ, "GOLEMD_TEST_STORE": "postgresql"}
    with tempfile.TemporaryFile("w+") as out:
        second = subprocess.Popen([sys.executable, "-m", "pytest", "tests/integration", "-p", "no:cacheprovider"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            first = subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]])
        finally:
            code = second.wait()
        out.seek(0)
        print("\n===== the integration suite again, on PostgreSQL (GOLEMD_TEST_STORE=postgresql) =====",
              flush=True)
        sys.stdout.write(out.read())
    return first or code


if __name__ == "__main__":
    sys.exit(main())
