"""Read Sluice's curated shards from Python with the Swift loader's split, shuffle, packing and resume state."""
from .loader import Announcement, LoaderConfig, ShardLoader, is_held_out, mix, fnv1a, permutation
from .shards import read_shard, ShardError
from .dataset import ShardStream

__all__ = ["Announcement", "LoaderConfig", "ShardLoader", "ShardStream", "ShardError", "read_shard",
           "is_held_out", "mix", "fnv1a", "permutation"]
