"""Generate Python code and type stubs from the project's .proto files.

    python -m tools.protogen --out .     # write the generated files into the tree
    python -m tools.protogen --check     # exit 1 when the tree's generated files are stale

Both modes run the same protoc (grpcio-tools, pinned in pyproject.toml) with the same plugins, so
`--check` compares like with like.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("proto/pintu/v1", "demo/contracts")
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _protos() -> list[str]:
    found: list[str] = []
    for folder in SOURCES:
        found.extend(
            sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*.proto"))
        )
    return found


def generate(out: Path) -> None:
    """Run protoc over every .proto file, writing generated modules under `out`."""
    include = str(resources.files("grpc_tools") / "_proto")
    plugins = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *_protos(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def _generated(tree: Path) -> set[str]:
    return {
        p.relative_to(tree).as_posix()
        for folder in SOURCES
        for p in (tree / folder).glob("*")
        if p.name.endswith(SUFFIXES)
    }


def check() -> int:
    """Return 0 when the generated files in the tree match a fresh generation, else 1."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        for folder in SOURCES:
            (fresh / folder).mkdir(parents=True)
        generate(fresh)
        want, have = _generated(fresh), _generated(ROOT)
        stale = sorted(want ^ have)
        stale += sorted(
            name
            for name in want & have
            if not filecmp.cmp(fresh / name, ROOT / name, shallow=False)
        )
    if stale:
        print("generated protobuf code is stale; run `make proto`:", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print(f"generated protobuf code is up to date ({len(want)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="write generated files under this directory")
    mode.add_argument(
        "--check", action="store_true", help="compare the tree with a fresh generation"
    )
    options = parser.parse_args()
    if options.check:
        return check()
    generate(options.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
