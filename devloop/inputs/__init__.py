"""A service's inputs: ignore rules, the content digest, and file watching that cannot die silently.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.inputs.digest import (
    TAG_PREFIX,
    DigestCache,
    FileEntry,
    ServiceDigest,
    default_cache_path,
    dl_tag_hex,
    image_tag,
    open_regular,
    path_bytes,
)
from devloop.inputs.filewatch import TreeWatcher, WatchRoot

__all__ = [
    "TAG_PREFIX",
    "DigestCache",
    "FileEntry",
    "ServiceDigest",
    "TreeWatcher",
    "WatchRoot",
    "default_cache_path",
    "dl_tag_hex",
    "image_tag",
    "open_regular",
    "path_bytes",
]
