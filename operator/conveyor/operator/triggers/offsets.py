"""Which offset of a partition may be committed (pure): the lowest record still being turned
into runs, or just past the last one done when none is.

Records of a partition are handled at once, so they finish out of order; a commit must never
pass a record that is not done (a crash would lose it), so record 7 done before record 5
commits nothing past 5. A record whose run creation is waiting for the API server (a
retryable error) holds its partition's commits where they are until it is done.

Partitions are tracked per assignment (`Record.epoch`): after a rebalance the records that
came under the old one still finish, and their commits go only as far as their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.kafka import Record, TopicPartition

_Key = tuple[TopicPartition, int]


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    done_up_to: int = -1  # the highest offset done
    committed: int = -1  # the last offset handed out to commit (the next one to read)


class Offsets:
    """The records of each partition (and assignment) not yet done."""

    def __init__(self) -> None:
        self._partitions: dict[_Key, _Partition] = {}

    def arrived(self, record: Record) -> None:
        """`record` is being handled; call in the order the consumer handed them out."""
        key = (record.where, record.epoch)
        # Before the first record tracked, there is nothing of ours to commit.
        partition = self._partitions.setdefault(key, _Partition(committed=record.offset))
        partition.pending.add(record.offset)

    def done(self, record: Record) -> int | None:
        """`record` is done (its runs exist, or it is dropped for good): the offset to commit
        now (the next to read), or None if the commit cannot move."""
        key = (record.where, record.epoch)
        partition = self._partitions.get(key)
        if partition is None or record.offset not in partition.pending:
            return None
        partition.pending.discard(record.offset)
        partition.done_up_to = max(partition.done_up_to, record.offset)
        if partition.pending:
            offset = min(partition.pending)
        else:
            offset = partition.done_up_to + 1
            del self._partitions[key]  # nothing left to hold: the next record starts afresh
        if offset <= partition.committed:
            return None
        partition.committed = offset
        return offset

    def waiting(self) -> int:
        """Records not done, over every partition."""
        return sum(len(p.pending) for p in self._partitions.values())
