"""Type stubs for the compiled :mod:`_native.hashing` (same API as ``_native.hashing_py``)."""
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_DEPTH: int

def portable_hash(key: Any) -> int: ...
def hash_array(keys: np.ndarray | Iterable[Any]) -> npt.NDArray[np.uint64]: ...
def partition_ids(
    keys: np.ndarray | Iterable[Any], num_partitions: int
) -> npt.NDArray[np.int32]: ...
