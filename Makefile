# syncsuite: `make run` starts the suite, `make test` tests it. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
INSTALLED := $(VENV)/.installed
GENERATED := gen/.generated
PROTOS := $(shell find protos -name '*.proto' 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: all install gen run test lint bench lock clean

all: gen

$(INSTALLED): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "syncsuite-gen.pth").write_text(str(pathlib.Path("gen").resolve()) + "\n")'
	touch $@

install: $(INSTALLED)

# Generated code lands where its import path equals the proto package (syncsuite.<area>.v1).
$(GENERATED): $(INSTALLED) $(PROTOS)
	rm -rf gen && mkdir -p gen
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=gen --grpc_python_out=gen --mypy_out=gen --mypy_grpc_out=gen $(PROTOS)
	touch $@

gen: $(GENERATED)

run: $(GENERATED)
	$(BIN)/python -m services

test: $(GENERATED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(GENERATED)
	$(BIN)/python -m bench

lint: $(GENERATED)
	$(BIN)/ruff check shared services tests bench
	cd protos && npx --yes @bufbuild/buf@1.47.2 lint

lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) gen .run .pytest_cache
