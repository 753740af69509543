"""ShardStream: an iterable dataset over a curated directory or the sluice.shards topic."""
import copy
import os
import sqlite3
import time

from .loader import Announcement, LoaderConfig, ShardLoader

try:  # A torch IterableDataset when torch is installed; a plain iterable otherwise.
    import torch
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # pragma: no cover - exercised where torch is absent
    torch = None
    _Base = object


def directory_announcements(directory):
    """The sealed shards of a curated directory, from its index.sqlite, in name order (as the Swift trainer)."""
    path = os.path.join(directory, "index.sqlite")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory} is not a curated directory (no index.sqlite)")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT name, path, sha256, samples FROM shards WHERE status = 'sealed' ORDER BY name").fetchall()
    finally:
        connection.close()
    return [Announcement(name, p, sha, samples) for name, p, sha, samples in rows]


class ShardStream(_Base):
    """Yields (inputs, targets) batches: torch.LongTensor (batch, context) when torch is installed and
    `as_tensors` is true, else pairs of bytes of length batch × context."""

    def __init__(self, config, announcements=None, base_directory=None, kafka=None, topic="sluice.shards",
                 exit_at_end=True, poll_seconds=0.5, as_tensors=True):
        self.config = config
        self._announcements = announcements
        self.base_directory = base_directory
        self.kafka = kafka
        self.topic = topic
        self.exit_at_end = exit_at_end
        self.poll_seconds = poll_seconds
        self.as_tensors = as_tensors and torch is not None
        self._loader = ShardLoader(config, base_directory)
        self.events = self._loader.events

    @classmethod
    def from_directory(cls, directory, **options):
        loader_keys = {"rank", "world_size", "seed", "shuffle_buffer", "context_length", "batch_size", "separator", "holdout"}
        config = LoaderConfig(**{k: v for k, v in options.items() if k in loader_keys})
        rest = {k: v for k, v in options.items() if k not in loader_keys}
        return cls(config, announcements=directory_announcements(directory), base_directory=directory, **rest)

    @classmethod
    def from_topic(cls, kafka, topic="sluice.shards", shards_root=None, exit_at_end=False, **options):
        loader_keys = {"rank", "world_size", "seed", "shuffle_buffer", "context_length", "batch_size", "separator", "holdout"}
        config = LoaderConfig(**{k: v for k, v in options.items() if k in loader_keys})
        rest = {k: v for k, v in options.items() if k not in loader_keys}
        return cls(config, base_directory=shards_root, kafka=dict(kafka), topic=topic, exit_at_end=exit_at_end, **rest)

    def state_dict(self):
        """The loader's exact position (JSON-compatible with Sluice's LoaderState)."""
        return copy.deepcopy(self._loader.state)

    def load_state_dict(self, state):
        self._loader = ShardLoader(self.config, self.base_directory, state)
        self.events = self._loader.events

    def _convert(self, batch):
        if not self.as_tensors:
            return batch
        b, t = self.config.batch_size, self.config.context_length
        inputs = torch.frombuffer(bytearray(batch[0]), dtype=torch.uint8).to(torch.long).view(b, t)
        targets = torch.frombuffer(bytearray(batch[1]), dtype=torch.uint8).to(torch.long).view(b, t)
        return inputs, targets

    def __iter__(self):
        if self.kafka is None:
            yield from self._iterate_directory()
        else:
            yield from self._iterate_topic()

    def _iterate_directory(self):
        loader = self._loader
        for announcement in self._announcements[loader.state["offered"]:]:
            loader.offer(announcement)
        loader.finish()
        while True:
            batch = loader.next_batch()
            if batch is None:
                return
            yield self._convert(batch)

    def _iterate_topic(self):
        from confluent_kafka import Consumer, TopicPartition, KafkaException
        settings = {"group.id": "sluice-client-unused", "enable.auto.commit": False, "enable.partition.eof": False}
        settings.update(self.kafka)
        consumer = Consumer(settings)
        loader = self._loader
        try:
            start = loader.state.get("nextOffset", 0)
            consumer.assign([TopicPartition(self.topic, 0, start)])
            while True:
                batch = loader.next_batch()
                if batch is not None:
                    yield self._convert(batch)
                    continue
                if loader.state["finished"]:
                    return
                position = loader.state.get("nextOffset", 0)
                _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
                if position >= high:
                    if self.exit_at_end:
                        loader.finish()
                        continue
                    time.sleep(self.poll_seconds)
                    continue
                message = consumer.poll(self.poll_seconds)
                if message is None:
                    continue
                if message.error():
                    raise KafkaException(message.error())
                try:
                    announcement = Announcement.from_event(message.value())
                except ValueError as error:
                    loader.skip_event(message.offset(), str(error))
                    continue
                loader.offer(announcement, offset=message.offset())
        finally:
            consumer.close()
