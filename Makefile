# Rotor. `make run` starts a development server; `make test` is the one test
# command (CI runs it through .ci/run).
GO       ?= go
BIN      := bin/rotor
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X rotor.sh/rotor/cli.Version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: build run test test-deps lint check-configs bench integration soak fuzz proto clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rotor

# A development server on 127.0.0.1:8080 with data in ./data and a generated
# master key (printed admin API key on first start).
run: build
	./$(BIN) serve --log-format text

test: lint test-deps check-configs
	$(GO) test -race -count=1 ./...

# Debian packages the tests need, installed when missing (as root):
# promtool (package prometheus) for the alert rules, chromium for the
# dashboard's browser test.
test-deps:
	@for pair in promtool:prometheus chromium:chromium; do \
		cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v $$cmd >/dev/null 2>&1 && continue; \
		if [ "$$(id -u)" != 0 ]; then echo "$$cmd missing: apt-get install $$pkg"; exit 1; fi; \
		echo "installing $$pkg"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkg >/dev/null 2>&1 || \
		{ apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkg >/dev/null; } || exit 1; \
	done

# The shipped Prometheus rules and scrape config must load.
check-configs: test-deps
	promtool check rules configs/prometheus/rules.yml
	promtool check config configs/prometheus/scrape.yml

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Go benchmarks, then the proxy load harness (goproxy passthrough vs Rotor,
# side by side in one run, plus a 1 GiB streamed body). Figures and how to
# read them: docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	$(GO) run ./bench/proxyload
	$(GO) run ./bench/dispatchload
	$(GO) run ./bench/dispatchload -postgres-dsn "$${ROTOR_TEST_POSTGRES_DSN:-postgres://127.0.0.1:5432/test?sslmode=disable}"

# The integration suite against the built binary, with the CI-length soak
# (60 s of proxied requests and dispatches at a fixed rate) and the
# PostgreSQL restart test (which restarts the local cluster, so it never runs
# alongside other packages). Figures: docs/reliability.md.
SOAK_PROXY_RPS ?= 1000
SOAK_JOB_RPS ?= 500
SOAK_ENV = ROTOR_SOAK_PROXY_RPS=$(SOAK_PROXY_RPS) ROTOR_SOAK_JOB_RPS=$(SOAK_JOB_RPS) ROTOR_SOAK_REPORT=$(CURDIR)/bin/soak-report.json
integration:
	@mkdir -p bin
	@$(SOAK_ENV) ROTOR_SOAK_DURATION=60s ROTOR_TEST_PG_RESTART=1 $(GO) test -race -count=1 -timeout 20m -v ./integration/... > bin/integration.log 2>&1; rc=$$?; \
	grep -E '^(--- |ok|FAIL|panic)' bin/integration.log; cat bin/soak-report.json 2>/dev/null; echo; \
	if [ $$rc -ne 0 ]; then tail -60 bin/integration.log; fi; exit $$rc

# The long soak, run by hand: 10 minutes at the same rates.
soak:
	@mkdir -p bin
	$(SOAK_ENV) ROTOR_SOAK_DURATION=10m $(GO) test -race -count=1 -timeout 30m -v -run '^TestSoak$$' ./integration/...

# Each fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSealed$$' -fuzztime $(FUZZTIME) ./vault
	$(GO) test -run '^$$' -fuzz '^FuzzRewrite$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzJSONLex$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(FUZZTIME) ./internal/jsonx
	$(GO) test -run '^$$' -fuzz '^FuzzRequestBodies$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzParseDotenv$$' -fuzztime $(FUZZTIME) ./cli
	# issue 10 (proxy): the scrubber's matcher and allowed_hosts parsing
	$(GO) test -run '^$$' -fuzz '^FuzzScrubber$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeAllowedHosts$$' -fuzztime $(FUZZTIME) ./vault

# Regenerate the storage plugin protocol's Go code (committed). Needs protoc
# (Debian: apt-get install protobuf-compiler) and the Go generators:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
proto:
	cd plugins/proto && PATH="$$PATH:$$(go env GOPATH)/bin" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative storage.proto

clean:
	rm -rf bin
