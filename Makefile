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
# It is built beside and swapped in, so a run that imports gen/ never sees it half-written.
$(GENERATED): $(INSTALLED) $(PROTOS)
	rm -rf gen.next && mkdir -p gen.next
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=gen.next --grpc_python_out=gen.next \
	  --mypy_out=quiet:gen.next --mypy_grpc_out=quiet:gen.next $(PROTOS)
	touch gen.next/.generated
	rm -rf gen && mv gen.next gen

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
