# Developer entry points. Everything runs from the project's virtual environment (.venv),
# which scripts/setup creates.
PY ?= .venv/bin/python
PROTOS := $(sort $(wildcard proto/pintu/v1/*.proto) $(wildcard demo/contracts/*.proto))

.PHONY: proto proto-check lint typecheck test bench demo

## proto: regenerate Python code and type stubs from every .proto file
proto:
	$(PY) -m tools.protogen --out .

## proto-check: fail when the generated files differ from what the .proto files produce
proto-check:
	$(PY) -m tools.protogen --check

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck:
	$(PY) -m mypy

test:
	./scripts/test

bench:
	$(PY) -m bench.run

demo:
	./scripts/demo
