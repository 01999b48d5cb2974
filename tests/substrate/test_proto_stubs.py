"""The generated gRPC stubs must match substrate/v1/*.proto (they are built, not committed)."""
from __future__ import annotations

import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ["substrate_pb2.py", "substrate_pb2_grpc.py", "substrate_pb2.pyi"]


def _generate(proto_root: pathlib.Path, out: pathlib.Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    rel = "substrate/v1/substrate.proto"
    code = protoc.main(["grpc_tools.protoc", f"-I{proto_root}", f"-I{include}",
                        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", rel])
    assert code == 0, "protoc failed"


def test_stubs_match_the_proto(tmp_path: pathlib.Path) -> None:
    _generate(ROOT, tmp_path)
    for name in GENERATED:
        built = (ROOT / "substrate" / "v1" / name).read_text()
        fresh = (tmp_path / "substrate" / "v1" / name).read_text()
        assert built == fresh, (f"substrate/v1/{name} is stale: reinstall the package "
                                "(pip install -e .) to regenerate it from substrate.proto")


def test_drift_is_detected(tmp_path: pathlib.Path) -> None:
    # Changing the .proto must change the generated code, or the test above proves nothing.
    src = tmp_path / "src"
    (src / "substrate" / "v1").mkdir(parents=True)
    proto = (ROOT / "substrate" / "v1" / "substrate.proto").read_text()
    (src / "substrate" / "v1" / "substrate.proto").write_text(
        proto.replace("message Range {", "message Range {\n  uint64 stride = 99;", 1))
    out = tmp_path / "out"
    out.mkdir()
    _generate(src, out)
    built = (ROOT / "substrate" / "v1" / "substrate_pb2.py").read_text()
    assert (out / "substrate" / "v1" / "substrate_pb2.py").read_text() != built


def test_enums_start_with_unknown() -> None:
    from substrate.v1 import pb
    enums = [pb.TaskStatus.State, pb.Call.Type, pb.Event.Type, pb.AgentCall.Type,
             pb.AgentEvent.Type, pb.ExecutorCall.Type, pb.ExecutorEvent.Type]
    for enum in enums:
        assert enum.Name(0) == "UNKNOWN"
