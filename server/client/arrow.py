"""Columnar upserts as Arrow IPC streams: the client's side of REST binary ingest."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson


def encode_upsert(ids: Any, vectors: np.ndarray, payloads: Any = None, texts: Any = None
                  ) -> bytes:
    """The client's side: one Arrow IPC stream of a columnar batch."""
    import pyarrow as pa

    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    columns = {"id": pa.array([str(i) for i in ids], pa.string()),
               "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)),
                                                          rows.shape[1])}
    if texts is not None:
        columns["text"] = pa.array(list(texts), pa.string())
    if payloads is not None:
        columns["payload"] = pa.array([orjson.dumps(p, option=orjson.OPT_SERIALIZE_NUMPY)
                                       .decode() if p else "" for p in payloads], pa.string())
    batch = pa.record_batch(list(columns.values()), names=list(columns))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()
