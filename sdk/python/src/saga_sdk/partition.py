"""The partition librdkafka's default partitioner (consistent_random) gives
a message key: CRC-32 of the key modulo the partition count. The SDK
produces with confluent-kafka, which is librdkafka, so it needs none of
this; it is here for other producers and for the tests
(tests/vectors/partitions.json)."""

from __future__ import annotations

import zlib

PARTITIONER = "consistent_random"


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a non-empty key among partitions (an empty key gets
    a random one from librdkafka)."""
    if partitions < 1:
        raise ValueError(f"{partitions} partitions")
    if not key:
        raise ValueError("an empty key is placed at random")
    return zlib.crc32(key) % partitions
