"""Generated protocol stubs for ``substrate.v1`` (built from ``substrate.proto``).

Only the substrate's own edge modules import these; frameworks see plain dataclasses.
"""
from substrate.v1 import substrate_pb2 as pb  # noqa: F401
from substrate.v1 import substrate_pb2_grpc as rpc  # noqa: F401
