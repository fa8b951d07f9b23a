"""``python -m sluice.lab.backends.statsd_exporter [flags]``: the real exporter's flags."""

import sys

from sluice.lab.backends.statsd_exporter.app import main

if __name__ == "__main__":
    sys.exit(main())
