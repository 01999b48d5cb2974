"""The cluster the batch tests submit to: two agent processes whose working directories are
not the scripts' folder, so user code must be shipped."""
from __future__ import annotations

import pytest

from substrate import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(agents=2, cpus=2, mem=2048, processes=True,
                      work_dir=str(tmp_path_factory.mktemp("agents"))) as c:
        yield c
