"""The helpers of these tests live next to them (``zipkin_kit.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
