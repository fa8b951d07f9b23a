"""``output.console`` (the labs keep one commented out for debugging): each event as one JSON
object on stdout (``codec.json.pretty`` indents it), with ``@metadata`` as Filebeat prints it."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from sluice.lab.backends.filebeat import BEAT, VERSION
from sluice.lab.backends.filebeat.config import ConfigError, Section
from sluice.lab.backends.filebeat.event import format_ts
from sluice.lab.backends.filebeat.pipeline import Acker, MemQueue, Stats


class ConsoleWorker:
    def __init__(self, cfg: Section, queue: MemQueue, acker: Acker, stats: Stats, stream: TextIO | None = None) -> None:
        cfg.check({"enabled", "codec", "bulk_max_size", "pretty"})
        codec = cfg.child("codec")
        if codec.has("format"):
            raise ConfigError(f"{codec.name('format')}: the format codec is not supported by this Filebeat stand-in (use codec.json)")
        js = codec.child("json")
        self.pretty = js.boolean("pretty", cfg.boolean("pretty", False))
        self.escape_html = js.boolean("escape_html", False)
        self.bulk_max_size = cfg.integer("bulk_max_size", 2048, minimum=1)
        self.queue, self.acker, self.stats = queue, acker, stats
        self.stream = stream

    async def run(self) -> None:
        while True:
            batch = await self.queue.get(self.bulk_max_size)
            if not batch:
                return
            seq = self.acker.register()
            out = self.stream or sys.stdout
            for ev in batch:
                if ev.fields is None:
                    continue
                doc = {
                    "@timestamp": format_ts(ev.ts_ns),
                    "@metadata": {"beat": BEAT, "type": "_doc", "version": VERSION, **(ev.meta or {})},
                }
                doc.update(ev.fields)
                text = json.dumps(
                    doc, ensure_ascii=False, indent=2 if self.pretty else None, separators=None if self.pretty else (",", ":")
                )
                if self.escape_html:
                    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                out.write(text + "\n")
                self.stats.acked += 1
            out.flush()
            self.stats.batches += 1
            self.acker.ack(seq, batch)
