"""``sluice lab``: the docker-compose lab runner (issue #3).

Not implemented yet; until it lands this command says so plainly instead of failing obscurely.
`scripts/demo.sh` runs the traffic-shifting lab's config on loopback meanwhile.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    print(
        "sluice lab: the lab runner is not implemented yet (issue #3).\n"
        "Meanwhile scripts/demo.sh runs the http-traffic-shifting lab's front-envoy.yaml on loopback.",
        file=sys.stderr,
    )
    return 2
