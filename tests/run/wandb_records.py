"""The records of an offline W&B run, read from its ``.wandb`` file with no network and no W&B service.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB
blocks of chunks, each a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and a
piece of one serialized ``wandb_internal_pb2.Record``; a block's tail shorter than a header is padding."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path}: not a W&B run file"
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # padding at the end of a block
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:
            break
        parts.append(data[pos + HEADER : pos + HEADER + length])
        pos += HEADER + length
        if kind in (1, 4):  # a record ends here
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def _key(update) -> str:
    return update.key or "/".join(update.nested_key)


def offline_run(run_dir: Path) -> dict:
    """One offline run as a runs table sees it: its group and name, config, history rows and final summary."""
    (path,) = Path(run_dir).glob("wandb/offline-run-*/*.wandb")
    run = {"group": None, "name": None, "config": {}, "history": [], "summary": {}}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run["group"], run["name"] = r.run.run_group, r.run.display_name
        elif kind == "config":
            run["config"].update({_key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            run["summary"].update({_key(u): json.loads(u.value_json) for u in r.summary.update})
    return run
