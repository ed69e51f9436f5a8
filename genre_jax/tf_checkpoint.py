"""Read a TensorFlow checkpoint's variables without TensorFlow.

A TensorFlow (1.x and 2.x) checkpoint ``PREFIX`` is an index file ``PREFIX.index`` and data
shards ``PREFIX.data-00000-of-0000N``. The index is a LevelDB-format table (sorted keys, blocks
of prefix-compressed entries, a 48-byte footer) mapping each variable's name to a
``BundleEntryProto``: dtype, shape, shard, byte offset and size. The data shards hold the raw
little-endian tensor bytes. Only what reading variables needs is implemented here: uncompressed
blocks (TensorFlow writes no others) and whole, unpartitioned variables of numeric or boolean
dtype. The CRC-32C checksums are not verified; the caller checks the files' own digest.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB's table magic, the footer's last 8 bytes
FOOTER_BYTES = 48
# TensorFlow's DataType enum values -> numpy dtypes (little-endian).
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}


class TFCheckpointError(ValueError):
    """The bytes are not a checkpoint this reader understands (the message says why)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``: ``(value, next position)``."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise TFCheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """``(field number, value)`` of a protobuf message: ints for varint/fixed, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise TFCheckpointError(f"protobuf wire type {wire} (field {field}) is not supported")
        yield field, value


def _block(table: bytes, offset: int, size: int) -> Iterator[tuple[bytes, bytes]]:
    """The ``(key, value)`` entries of one table block (keys share prefixes with the last)."""
    if offset + size + 5 > len(table):
        raise TFCheckpointError(f"block at byte {offset} ({size} bytes) runs past the index's end")
    if table[offset + size] != 0:
        kind = table[offset + size]
        raise TFCheckpointError(f"block at byte {offset} is compressed (type {kind})")
    block = table[offset : offset + size]
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def index_entries(index: bytes) -> dict[str, bytes]:
    """Every ``name -> serialized BundleEntryProto`` of a checkpoint index (``""``: the header)."""
    if len(index) < FOOTER_BYTES:
        raise TFCheckpointError(f"index of {len(index)} bytes is shorter than a table footer")
    footer = index[-FOOTER_BYTES:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise TFCheckpointError("the index does not end in the table magic number")
    _, pos = _varint(footer, 0)  # metaindex offset (unused)
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries: dict[str, bytes] = {}
    for _, handle in _block(index, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block(index, offset, size):
            entries[key.decode()] = value
    return entries


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, value in _proto_fields(buf):
        if field == 2:  # TensorShapeProto.dim
            dims.append(next((int(v) for f, v in _proto_fields(value) if f == 1), 0))
        elif field == 3 and value:
            raise TFCheckpointError("a variable of unknown rank")
    return tuple(dims)


def read_checkpoint(index: bytes, shards: Sequence[bytes]) -> dict[str, np.ndarray]:
    """Every variable of a checkpoint, from the bytes of its index and of its data shards.

    Raises :class:`TFCheckpointError` for a big-endian checkpoint, a partitioned variable, a
    dtype without a numpy equivalent (strings, resources) or a tensor outside its shard.
    """
    variables: dict[str, np.ndarray] = {}
    for name, entry in index_entries(index).items():
        fields = dict(_proto_fields(entry))
        if name == "":  # BundleHeaderProto: num_shards = 1, endianness = 2 (0: little)
            if fields.get(2, 0) != 0:
                raise TFCheckpointError("big-endian checkpoint")
            if fields.get(1, 1) != len(shards):
                count = fields.get(1, 1)
                raise TFCheckpointError(f"checkpoint has {count} data shards, given {len(shards)}")
            continue
        if 7 in fields:
            raise TFCheckpointError(f"variable {name!r} is partitioned into slices")
        code = int(fields.get(1, 0))
        if code not in DTYPES:
            raise TFCheckpointError(f"variable {name!r}: TensorFlow dtype {code} is not supported")
        shape = _shape(fields.get(2, b""))
        shard, offset, size = (int(fields.get(k, 0)) for k in (3, 4, 5))
        dtype = np.dtype(DTYPES[code])
        count = int(np.prod(shape, dtype=np.int64))
        inside = shard < len(shards) and offset + size <= len(shards[shard])
        if not inside or size != count * dtype.itemsize:
            raise TFCheckpointError(f"variable {name!r}: its bytes lie outside data shard {shard}")
        values = np.frombuffer(shards[shard], dtype, count, offset).reshape(shape)
        variables[name] = values.astype(dtype.newbyteorder("="))
    return variables


def read_checkpoint_files(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every variable of the checkpoint whose files are ``prefix.index`` and ``prefix.data-*``."""
    prefix = str(prefix)
    index_path = Path(prefix + ".index")
    if not index_path.is_file():
        raise TFCheckpointError(f"{index_path}: no such checkpoint index")
    index = index_path.read_bytes()
    header = dict(_proto_fields(index_entries(index).get("", b"")))
    count = int(header.get(1, 1))
    shards = []
    for i in range(count):
        path = Path(f"{prefix}.data-{i:05d}-of-{count:05d}")
        if not path.is_file():
            raise TFCheckpointError(f"{path}: data shard {i} of the checkpoint is missing")
        shards.append(path.read_bytes())
    return read_checkpoint(index, shards)
