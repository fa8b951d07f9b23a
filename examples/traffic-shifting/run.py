"""Run the seed's http-traffic-shifting front-envoy.yaml unchanged with local demoapps.

The compose network of the lab is reproduced on loopback: 172.31.55.10 → 127.31.55.10, and the
aliases demoappv10 / demoappv11 resolve (through SLUICE_HOSTS_FILE) to every replica.
Try, in another shell:
    curl http://127.31.55.10/hostname
    curl -XPOST 'http://127.31.55.10:9901/runtime_modify?routing.traffic_shift.demoapp=90'
    ../shared/seed/labs/http-traffic-shifting/send-request.sh 127.31.55.10
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seed" / "labs" / "http-traffic-shifting" / "front-envoy.yaml"
REPLICAS = {
    "demoappv10": [("demoapp-v1.0-1", "127.31.55.11"), ("demoapp-v1.0-2", "127.31.55.12"), ("demoapp-v1.0-3", "127.31.55.13")],
    "demoappv11": [("demoapp-v1.1-1", "127.31.55.21"), ("demoapp-v1.1-2", "127.31.55.22")],
}


def main() -> int:
    config = Path(sys.argv[1]) if len(sys.argv) > 1 else SEED
    if not config.is_file():
        print(f"config not found: {config}", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="sluice-demo-"))
    hosts = tmp / "hosts"
    hosts.write_text("".join(f"{ip} {alias} {name}\n" for alias, reps in REPLICAS.items() for name, ip in reps))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for alias, reps in REPLICAS.items():
            version = "v1.0" if alias.endswith("10") else "v1.1"
            for name, ip in reps:
                procs.append(subprocess.Popen([sys.executable, "-m", "sluice.lab.apps.demoapp", "--host", ip, "--port", "80", "--name", name, "--version", version]))
        time.sleep(0.5)
        env = dict(os.environ, SLUICE_HOSTS_FILE=str(hosts), SLUICE_BIND_ADDRESS="127.31.55.10")
        proxy = subprocess.Popen([sys.executable, "-m", "sluice", "-c", str(config)], env=env)
        procs.append(proxy)
        print("front proxy: http://127.31.55.10/  admin: http://127.31.55.10:9901/  (Ctrl-C to stop)", flush=True)
        return proxy.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
