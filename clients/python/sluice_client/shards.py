"""Reading Sluice shards (WebDataset tar, optionally one zstd frame per sample group)."""
import hashlib
import io
import shutil
import subprocess
import tarfile


class ShardError(Exception):
    """A shard that cannot be used: missing, corrupt, or not what was announced."""


def _decompress(data):
    try:
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except ImportError:
        pass
    tool = shutil.which("zstd")
    if tool is None:
        raise ShardError("a .tar.zst shard needs the zstandard module or the zstd tool")
    result = subprocess.run([tool, "-dc"], input=data, capture_output=True)
    if result.returncode != 0:
        raise ShardError("zstd could not decompress the shard: " + result.stderr.decode(errors="replace").strip())
    return result.stdout


def read_shard(path, sha256=None):
    """Samples of a shard in file order, as (key, text bytes, json bytes); checks the SHA-256 when given."""
    try:
        with open(path, "rb") as f:
            stored = f.read()
    except OSError as error:
        raise ShardError(f"cannot read {path}: {error}")
    if sha256 is not None:
        digest = hashlib.sha256(stored).hexdigest()
        if digest != sha256.lower():
            raise ShardError(f"SHA-256 mismatch for {path}: announced {sha256}, file has {digest}")
    data = _decompress(stored) if str(path).endswith(".zst") else stored
    samples = []
    positions = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = member.name
                if name.startswith("/") or ".." in name.split("/"):
                    raise ShardError(f"{path}: member name {name!r} escapes the shard")
                if "." not in name:
                    continue
                key, ext = name.split(".", 1)
                content = archive.extractfile(member).read()
                if key not in positions:
                    positions[key] = len(samples)
                    samples.append([key, b"", b""])
                if ext == "txt":
                    samples[positions[key]][1] = content
                elif ext == "json":
                    samples[positions[key]][2] = content
    except tarfile.TarError as error:
        raise ShardError(f"{path} is not a readable tar: {error}")
    return [tuple(s) for s in samples]
