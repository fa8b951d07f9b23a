"""``python -m sluice.lab.backends.filebeat [flags]``: Filebeat's own flags plus ``--root``/``--mount``."""

import sys

from sluice.lab.backends.filebeat.app import main

if __name__ == "__main__":
    sys.exit(main())
