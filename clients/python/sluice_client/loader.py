"""The shard stream loader: a line-for-line port of SluiceTrain.ShardStreamLoader (same numbers, same state)."""
import os
import sqlite3
import time
from dataclasses import dataclass, field

from .shards import ShardError, read_shard

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(value):
    """SplitMix64's output function."""
    z = value & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def fnv1a(name):
    h = 0xCBF29CE484222325
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def permutation(count, seed, shard):
    """The order a shard's samples are read in: Fisher-Yates driven by SplitMix64 from seed ^ FNV-1a(name)."""
    random = (seed ^ fnv1a(shard)) & MASK
    order = list(range(count))
    index = count - 1
    while index > 0:
        random = (random + GOLDEN) & MASK
        pick = mix(random) % (index + 1)
        order[index], order[pick] = order[pick], order[index]
        index -= 1
    return order


def is_held_out(shard, index, holdout):
    return holdout > 0 and mix(fnv1a(shard) ^ index) % holdout == 0


@dataclass
class Announcement:
    name: str
    path: str
    sha256: str
    samples: int

    @classmethod
    def from_event(cls, value):
        """Parses one sluice.shards event (JSON with shard, path, sha256, samples); raises ValueError."""
        import json
        event = json.loads(value)
        if not isinstance(event, dict):
            raise ValueError("a shard announcement is not a JSON object")
        try:
            return cls(event["shard"], event["path"], event["sha256"], int(event["samples"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"a shard announcement lacks shard, path, sha256 or samples: {error}")

    def to_json(self):
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "samples": self.samples}


@dataclass
class LoaderConfig:
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    shuffle_buffer: int = 1024
    context_length: int = 128
    batch_size: int = 8
    separator: int = 0
    holdout: int = 0

    def __post_init__(self):
        if not (self.world_size >= 1 and 0 <= self.rank < self.world_size):
            raise ValueError("rank must be in 0..world_size-1")
        if self.context_length < 1 or self.batch_size < 1 or self.shuffle_buffer < 1:
            raise ValueError("context_length, batch_size and shuffle_buffer must be at least 1")


def _fresh_state(seed):
    return {"offered": 0, "seen": [], "pending": [], "buffer": [], "random": mix((seed ^ 0x5EED5EED5EED5EED) & MASK),
            "carry": [], "batches": 0, "skipped": [], "finished": False}


class ShardLoader:
    """Offer announcements in stream order; take batches of (inputs, targets) bytes.

    `state` (a dict) is JSON-compatible with the Swift loader's LoaderState."""

    def __init__(self, config, base_directory=None, state=None):
        self.config = config
        self.base_directory = base_directory
        self.state = _normalise(state) if state is not None else _fresh_state(config.seed)
        self._seen = set(self.state["seen"])
        self._cache = {}
        self._directories = {}
        self.events = []
        # Deleted samples (from each shard's curated directory index) are never yielded, as in the Swift loader.
        self.deletions = DeletionView()

    def _is_deleted(self, shard, key):
        directory = self._directories.get(shard)
        return directory is not None and key in self.deletions.deleted_keys(shard, directory)

    def offer(self, announcement, offset=None):
        s = self.state
        s["offered"] += 1
        if offset is not None:
            s["nextOffset"] = offset + 1
        if announcement.name in self._seen:
            return "repeated"
        self._seen.add(announcement.name)
        index = len(s["seen"])
        s["seen"].append(announcement.name)
        if index % self.config.world_size != self.config.rank:
            return "other_rank"
        s["pending"].append({"announcement": announcement.to_json(), "next": 0})
        return "assigned"

    def skip_event(self, offset, reason):
        self.state["nextOffset"] = offset + 1
        self.events.append(("skipped", f"offset {offset}", reason))

    def finish(self):
        self.state["finished"] = True

    def next_batch(self):
        c, s = self.config, self.state
        window = c.context_length
        need = c.batch_size * window + 1
        carry = s["carry"]
        while len(carry) < need:
            text = self._next_document()
            if text is None:
                return None
            carry.extend(text)
            carry.append(c.separator)
        inputs = bytearray()
        targets = bytearray()
        for row in range(c.batch_size):
            start = row * window
            inputs.extend(carry[start:start + window])
            targets.extend(carry[start + 1:start + window + 1])
        del carry[:need - 1]
        s["batches"] += 1
        return bytes(inputs), bytes(targets)

    def _next_random(self):
        self.state["random"] = (self.state["random"] + GOLDEN) & MASK
        return mix(self.state["random"])

    def _next_document(self):
        s = self.state
        buffer = s["buffer"]
        while True:
            while len(buffer) < self.config.shuffle_buffer:
                reference = self._next_from_shards()
                if reference is None:
                    break
                buffer.append(reference)
            if not buffer or (len(buffer) < self.config.shuffle_buffer and not s["finished"]):
                return None
            pick = self._next_random() % len(buffer)
            reference = buffer[pick]
            buffer[pick] = buffer[-1]
            buffer.pop()
            document = self._text(reference)
            self._release(reference["shard"])
            if document is not None:  # None: deleted since it was buffered
                return document

    def _next_from_shards(self):
        pending = self.state["pending"]
        position = 0
        while position < len(pending):
            entry = pending[position]
            announcement = entry["announcement"]
            samples = self._load(announcement)
            if samples is None:
                del pending[position]
                continue
            if entry["next"] >= len(samples):
                position += 1
                continue
            order = permutation(len(samples), self.config.seed, announcement["name"])
            index = order[entry["next"]]
            entry["next"] += 1
            if is_held_out(announcement["name"], index, self.config.holdout):
                continue
            if self._is_deleted(announcement["name"], samples[index][0]):
                continue
            return {"shard": announcement["name"], "index": index}
        return None

    def _release(self, shard):
        pending = self.state["pending"]
        position = next((i for i, e in enumerate(pending) if e["announcement"]["name"] == shard), None)
        if position is None:
            return
        entry = pending[position]
        total = len(self._cache[shard]) if shard in self._cache else entry["announcement"]["samples"]
        if not (entry["next"] >= total or shard in self.state["skipped"]):
            return
        if any(r["shard"] == shard for r in self.state["buffer"]):
            return
        del pending[position]
        self._cache.pop(shard, None)

    def _path(self, announcement):
        path = announcement["path"]
        if path.startswith("/") or self.base_directory is None:
            return path
        return os.path.join(self.base_directory, path)

    def _load(self, announcement):
        name = announcement["name"]
        if name in self._cache:
            return self._cache[name]
        if name in self.state["skipped"]:
            return None
        try:
            samples = read_shard(self._path(announcement), announcement["sha256"])
        except ShardError as error:
            self.state["skipped"].append(name)
            self.events.append(("skipped", name, str(error)))
            return None
        self._cache[name] = samples
        self._directories[name] = os.path.dirname(self._path(announcement))
        return samples

    def _text(self, reference):
        shard = reference["shard"]
        if shard not in self._cache:
            entry = next((e for e in self.state["pending"] if e["announcement"]["name"] == shard), None)
            if entry is not None:
                self._load(entry["announcement"])
        samples = self._cache.get(shard)
        if samples is None or reference["index"] >= len(samples):
            return b""
        key, text = samples[reference["index"]][0], samples[reference["index"]][1]
        if self._is_deleted(shard, key):
            return None
        return text


class DeletionView:
    """Which samples are deleted, per curated directory, from its index.sqlite; re-read at most every
    `refresh` seconds so a deletion reaches a running loader within seconds."""

    def __init__(self, refresh=2.0):
        self.refresh = refresh
        self._cache = {}

    def deleted_keys(self, shard, directory):
        path = os.path.join(directory, "index.sqlite")
        entry = self._cache.get(path)
        now = time.monotonic()
        if entry is None or now - entry[0] >= self.refresh:
            keys = {}
            if os.path.exists(path):
                try:
                    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                    try:
                        columns = {row[1] for row in connection.execute("PRAGMA table_info(samples)")}
                        if "deleted_at" in columns:
                            for shard_name, key in connection.execute(
                                    "SELECT shard, key FROM samples WHERE deleted_at IS NOT NULL"):
                                keys.setdefault(shard_name, set()).add(key)
                    finally:
                        connection.close()
                except sqlite3.Error:
                    keys = entry[1] if entry else {}
            entry = (now, keys)
            self._cache[path] = entry
        return entry[1].get(shard, set())


def _normalise(state):
    """Accepts a state dict as written by either loader (Swift's JSON leaves out nextOffset when unset)."""
    state = dict(state)
    fresh = _fresh_state(0)
    for key, value in fresh.items():
        state.setdefault(key, value)
    state["carry"] = list(state["carry"])
    state["pending"] = [{"announcement": dict(e["announcement"]), "next": e["next"]} for e in state["pending"]]
    state["buffer"] = [dict(r) for r in state["buffer"]]
    state["seen"] = list(state["seen"])
    state["skipped"] = list(state["skipped"])
    return state
