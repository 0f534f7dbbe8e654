# `make test` and `make bench` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PROTOS := $(wildcard protos/offerd/v1/*.proto)
GEN := src/offerd/v1/offerd_pb2.py

.PHONY: test soak bench instructions check serve cluster gen clean vsix

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,build]'
	touch $(STAMP)

# protobuf and gRPC code, generated into the package (imports resolve as offerd.v1)
$(GEN): $(PROTOS) $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src --grpc_python_out=src $(PROTOS)

gen: $(GEN)

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,build,bench]'
	touch $(VENV)/.bench

# headless Chromium, for the test that renders the simulation report's HTML page (Debian's package)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null

# HAProxy and Redis, for the cluster's tests and `offerd cluster local` (Debian's packages)
HAPROXY := /usr/sbin/haproxy
REDIS := /usr/bin/redis-server
$(HAPROXY) $(REDIS):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy redis-server > /dev/null

# nginx, measured against HAProxy by benchmarks/cluster.py (Debian's package)
NGINX := /usr/sbin/nginx
$(NGINX):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light > /dev/null

# a cluster on this machine: 3 shards, Redis and HAProxy (SHARDS=n, LISTEN=host:port)
cluster: $(STAMP) $(GEN) $(HAPROXY) $(REDIS)
	$(VENV)/bin/offerd cluster local --shards $${SHARDS:-3} --dir var/cluster --listen $${LISTEN:-127.0.0.1:50051}

# npm's tools for `make test`, at the versions package.json pins: buf, for the proto checks
# (tests/test_proto.py: lint, breaking changes); vscode-textmate and vscode-oniguruma, which
# tokenize .offer files with the editor grammar (tests/test_editor_grammar.py)
BUF := node_modules/.bin/buf
$(BUF): package.json
	npm install --no-audit --no-fund --no-package-lock
	touch $(BUF)

test: $(STAMP) $(GEN) $(CHROMIUM) $(HAPROXY) $(REDIS) $(BUF)
	$(PY) -m pytest

# the long runs of the hardening tests: a 3-minute soak (figures in benchmarks/results/soak.json),
# 10x the fuzzing (a random seed each run), 5x the property tests, the fault tests
soak: $(STAMP) $(GEN)
	OFFERD_SOAK_SECONDS=180 OFFERD_SOAK_REPORT=benchmarks/results/soak.json OFFERD_FUZZ_SCALE=10 \
	OFFERD_PROPERTY_SCALE=5 $(PY) -m pytest -s tests/test_soak.py tests/test_fuzz.py tests/test_properties.py \
	tests/test_faults.py

# serve the bundled example catalog (or CATALOG=dir) on 127.0.0.1:50051, data under ./var
serve: $(STAMP) $(GEN)
	$(VENV)/bin/offerd serve --listen $${LISTEN:-127.0.0.1:50051} --data var $${CATALOG:+--catalog $$CATALOG}

bench: $(VENV)/.bench $(GEN) $(HAPROXY) $(REDIS) $(NGINX)
	$(PY) benchmarks/rules.py
	$(PY) benchmarks/codec.py
	$(PY) benchmarks/store.py
	$(PY) benchmarks/prune.py
	$(PY) benchmarks/decide.py
	$(PY) benchmarks/simulate.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/cold.py
	$(PY) benchmarks/authoring.py
	$(PY) benchmarks/lsp.py
	$(MAKE) --no-print-directory instructions

# instructions per call counted by callgrind, exact on a busy machine, each stage of a decision
# too, and with the store's memory of recent contacts off (BASE=dir: another checkout with its
# own .venv, measured side by side); Debian's valgrind if missing
VALGRIND := /usr/bin/valgrind
$(VALGRIND):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind > /dev/null

instructions: $(VALGRIND) $(VENV)/.bench $(GEN)
	$(PY) benchmarks/instructions.py $${BASE:+--tree $$BASE} --tree . --stages --json benchmarks/results/instructions.json
	$(PY) benchmarks/instructions.py --cold --mode dry --mode recorded --json benchmarks/results/instructions-cold.json

# the VS Code extension (editors/vscode), packaged as editors/vscode/offerd-odl-VERSION.vsix:
# its language client and vsce from npm; the repository's LICENSE goes in the package
vsix:
	cd editors/vscode && npm install --no-audit --no-fund --no-package-lock && cp ../../LICENSE LICENSE \
	&& npx vsce package --allow-missing-repository

# check the bundled example catalog
check: $(STAMP)
	$(VENV)/bin/offerd check src/offerd/examples/catalog

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis src/offerd/v1/*_pb2*.py src/offerd/v1/*_pb2*.pyi
