"""Read the records of an offline W&B run file (``run-<id>.wandb``), as ``wandb sync`` would send them.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
records, each with a 7-byte header (CRC, 2-byte length, type: full / first / middle / last) and a
protobuf ``Record`` (``wandb.proto.wandb_internal_pb2``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def read_records(path: Path) -> list[Any]:
    """Every ``Record`` of the run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunk, payloads = HEADER, b"", []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if left < HEADER or (length == 0 and kind == 0):  # the block's padding
            pos += left
            continue
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            payloads.append(payload)
        elif kind == 2:
            chunk = payload
        elif kind == 3:
            chunk += payload
        elif kind == 4:
            payloads.append(chunk + payload)
    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def run_summary(path: Path) -> dict[str, Any]:
    """What the run records: name, group, job type, config (top-level keys), summary (last values), exit."""
    out: dict[str, Any] = {"config": {}, "summary": {}, "exit_code": None}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(name=record.run.display_name, group=record.run.run_group, job_type=record.run.job_type)
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update if u.key})
        elif kind == "summary":
            out["summary"].update({u.key: json.loads(u.value_json) for u in record.summary.update if u.key})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
