"""``python -m sluice.lab.backends.zipkin [--jaeger] [--host H] [--port P] [--data DIR]``."""

import sys

from sluice.lab.backends.zipkin.app import main

if __name__ == "__main__":
    sys.exit(main())
