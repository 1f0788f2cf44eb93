"""Reading ``.npz`` files that may be damaged or hostile: one exception, naming the file and entry.

``read_npz(path, error)`` returns the arrays of an ``.npz`` archive, or raises ``error`` (the
caller's exception class) with a message that names the file and, where one is to blame, the
entry. Before an entry is read, its ``.npy`` header is checked against what the archive stores:
an array whose header claims more bytes than the entry holds, or more than its compressed size
could inflate to, is refused before anything is allocated. Python objects (pickles) are never
loaded. A ``.npy`` file, a folder, an unreadable file and damaged compression all get a message.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

__all__ = ["read_npz"]

#: Longest ``.npy`` header accepted (numpy's own default limit).
MAX_HEADER_BYTES = 10000
#: Deflate inflates at most about 1032 : 1; an entry claiming more than this is damaged.
MAX_INFLATE = 1032


def read_npz(path: str | Path, error: type[Exception]) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` of the archive at ``path``; raise ``error`` if it is bad."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a .npz file") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e})") from None
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise error(f"{path}: not a .npz archive (a .npy file or a damaged one?): {e}") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        for info in archive.infolist():
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            if not name.endswith(".npy") or key in out:
                raise error(f"{path}: entry {name!r} is not one array of a .npz file")
            try:
                _check_header(archive, info)
                with archive.open(info) as fh:
                    out[key] = npy.read_array(fh, allow_pickle=False,
                                              max_header_size=MAX_HEADER_BYTES)
            except _Refused as e:
                raise error(f"{path}: entry {key!r} {e}") from None
            except Exception as e:  # noqa: BLE001 - any failure to read an entry is damage
                raise error(f"{path}: entry {key!r} is damaged ({type(e).__name__}: {e})") \
                    from None
    return out


class _Refused(Exception):
    pass


def _check_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    with archive.open(info) as fh:
        version = npy.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(fh, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(fh, max_header_size=MAX_HEADER_BYTES)
        else:
            raise _Refused(f"has .npy format version {version}, not 1.0 or 2.0")
    if dtype.hasobject:
        raise _Refused("holds Python objects, which are never loaded")
    claimed = math.prod(shape) * dtype.itemsize
    limit = min(info.file_size, MAX_INFLATE * info.compress_size + 4096)
    if claimed > limit:
        raise _Refused(f"claims a {shape} {dtype} array ({claimed} bytes) but holds at most "
                       f"{limit} bytes")
