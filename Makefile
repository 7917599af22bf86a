# posture — build, codegen, tests, benchmarks, demo.
# `make demo` runs the whole product locally; `make test` is what CI runs.

GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)

.PHONY: all build generate check-generated test test-short bench demo lint fmt clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/posture-hub ./hub
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/posture.ext ./extension
	$(GO) build -trimpath -o $(BIN)/fakeosqueryd ./extension/osquerytest/cmd/fakeosqueryd
	$(GO) build -trimpath -o $(BIN)/msstandin ./hub/sync/graph/standin/cmd/msstandin

# Regenerate Go, gateway and OpenAPI code from api/posture/v1 (local plugins
# pinned in go.mod's tool block; no network).
generate:
	$(GO) tool buf lint
	$(GO) tool buf generate

# Fails when the committed generated code differs from a fresh generation.
check-generated: generate
	@git diff --exit-code -- api/ || { echo 'generated code is stale: run make generate and commit'; exit 1; }
	@test -z "$$(git status --porcelain -- api/)" || { git status --porcelain -- api/; echo 'untracked generated files: run make generate and commit'; exit 1; }

# The whole suite. PostgreSQL tests use $$POSTURE_TEST_DATABASE_URL when set,
# else start a throw-away server from the machine's initdb/postgres.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

test-short:
	$(GO) test -short ./...

# Writes bench.json (one flat JSON object shared by all benchmarks).
bench:
	bash scripts/bench.sh

demo:
	bash scripts/demo.sh

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) tool buf lint

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) bench.json .demo
