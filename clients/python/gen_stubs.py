"""Generate the gRPC stubs of pancap_client from the repository's proto.

Building the package runs it (setup.py), so ``pip install clients/python``
needs no other step (``make python-client`` installs it so into .venv). By hand:

    python gen_stubs.py

The stubs land in ``pancap_client/_gen/`` (not committed), importable as
``pancap_client._gen.pancap_pb2`` and ``pancap_client._gen.pancap_pb2_grpc``.
Outside the repository (a source distribution) the stubs it carries are kept.
"""

import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto" / "pancap" / "v1" / "pancap.proto"
PACKAGE = "pancap_client/_gen"


def main() -> int:
    from grpc_tools import protoc
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    out = HERE / PACKAGE
    if not PROTO.exists() and (out / "pancap_pb2.py").exists():
        return 0  # built from a source distribution that carries the stubs
    with tempfile.TemporaryDirectory() as tmp:
        # Placing the proto at pancap_client/_gen/ makes the generated code
        # import its sibling as pancap_client._gen.pancap_pb2.
        src = pathlib.Path(tmp) / PACKAGE / "pancap.proto"
        src.parent.mkdir(parents=True)
        shutil.copyfile(PROTO, src)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{tmp}",
            f"-I{include}",
            f"--python_out={HERE}",
            f"--pyi_out={HERE}",
            f"--grpc_python_out={HERE}",
            str(src),
        ])
    if rc != 0:
        print(f"protoc failed with {rc}", file=sys.stderr)
        return rc
    (out / "__init__.py").write_text('"""Generated gRPC stubs of pancap.v1 (see gen_stubs.py)."""\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
