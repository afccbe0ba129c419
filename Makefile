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
	$(GO) test -race -count=1 -timeout 25m ./...
	# The proxy suites run on the lane above; once more on net/http alone.
	ROTOR_TEST_PROXY_ENGINE=std $(GO) test -race -count=1 -timeout 10m ./proxy/...

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
	$(GO) run ./bench/workflowload
	$(GO) run ./bench/workflowload -postgres-dsn "$${ROTOR_TEST_POSTGRES_DSN:-postgres://127.0.0.1:5432/test?sslmode=disable}"

# The integration suite against the built binary, with the CI-length soak
# (60 s of proxied requests and dispatches at a fixed rate) and the
# PostgreSQL restart test (which restarts the local cluster, so it never runs
# alongside other packages). Figures: docs/reliability.md.
SOAK_PROXY_RPS ?= 1000
# Jobs/s: 400 since the soak runs with retention (issue 11): beside 1,000
# proxied requests/s on 2 cores the race-built node reached 411 jobs/s in
# 60 s and 330 in 10 min with pruning on (500 before retention existed);
# the soak fails below 80% of its target, so 500 would fail on load alone.
# docs/reliability.md has the figures; the gap is an open item.
SOAK_JOB_RPS ?= 400
# TestSoakPostgres (issue 11: row counts flat with retention) runs at its own
# rates: on the shared 2-core machine the PostgreSQL node reached 134 jobs/s
# beside 940 proxied/s (docs/reliability.md), so its floor is set below that.
SOAK_PG_PROXY_RPS ?= 500
SOAK_PG_JOB_RPS ?= 100
SOAK_ENV = ROTOR_SOAK_PROXY_RPS=$(SOAK_PROXY_RPS) ROTOR_SOAK_JOB_RPS=$(SOAK_JOB_RPS) ROTOR_SOAK_REPORT=$(CURDIR)/bin/soak-report.json \
	ROTOR_SOAK_PG_PROXY_RPS=$(SOAK_PG_PROXY_RPS) ROTOR_SOAK_PG_JOB_RPS=$(SOAK_PG_JOB_RPS)
# make test already runs the whole integration suite (the soak for 3 s);
# this runs only the tests that need the long settings.
INTEGRATION_LONG ?= ^(TestSoak|TestSoakPostgres|TestPostgresRestartUnderLoad)$$
integration:
	@mkdir -p bin
	@$(SOAK_ENV) ROTOR_SOAK_DURATION=60s ROTOR_TEST_PG_RESTART=1 $(GO) test -race -count=1 -timeout 20m -v -run '$(INTEGRATION_LONG)' ./integration/... > bin/integration.log 2>&1; rc=$$?; \
	grep -E '^(--- |ok|FAIL|panic)' bin/integration.log; cat bin/soak-report.json bin/soak-report-postgres.json 2>/dev/null; echo; \
	if [ $$rc -ne 0 ]; then tail -60 bin/integration.log; fi; exit $$rc

# The long soak, run by hand: 10 minutes at the same rates (bbolt;
# SOAK_RUN='^TestSoakPostgres$$' for PostgreSQL).
SOAK_RUN ?= ^TestSoak$$
soak:
	@mkdir -p bin
	$(SOAK_ENV) ROTOR_SOAK_DURATION=10m $(GO) test -race -count=1 -timeout 30m -v -run '$(SOAK_RUN)' ./integration/...

# Each fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSealed$$' -fuzztime $(FUZZTIME) ./vault
	$(GO) test -run '^$$' -fuzz '^FuzzRewrite$$' -fuzztime $(FUZZTIME) ./template
	$(GO) test -run '^$$' -fuzz '^FuzzJSONLex$$' -fuzztime $(FUZZTIME) ./template
	$(GO) test -run '^$$' -fuzz '^FuzzRewriteJSONShape$$' -fuzztime $(FUZZTIME) ./template
	$(GO) test -run '^$$' -fuzz '^FuzzHostAllowed$$' -fuzztime $(FUZZTIME) ./vault
	$(GO) test -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(FUZZTIME) ./internal/jsonx
	$(GO) test -run '^$$' -fuzz '^FuzzRequestBodies$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzParseDotenv$$' -fuzztime $(FUZZTIME) ./cli
	# issue 10 (proxy): the scrubber's matcher and allowed_hosts parsing
	$(GO) test -run '^$$' -fuzz '^FuzzScrubber$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeAllowedHosts$$' -fuzztime $(FUZZTIME) ./vault
	# issue 15: the lane's request parser against net/http's
	$(GO) test -run '^$$' -fuzz '^FuzzLaneParse$$' -fuzztime $(FUZZTIME) ./proxy
	# issue 15: the request rewrite (one buffer per request) against the copy-per-string one
	$(GO) test -run '^$$' -fuzz '^FuzzRewriteLikeOld$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzParseTargetFast$$' -fuzztime $(FUZZTIME) ./proxy
	# issue 16: the host decoding a storage plugin's answers
	$(GO) test -run '^$$' -fuzz '^FuzzHostDecode$$' -fuzztime $(FUZZTIME) ./plugins
	$(GO) test -run '^$$' -fuzz '^FuzzFastPluginFrames$$' -fuzztime $(FUZZTIME) ./plugins
	$(GO) test -run '^$$' -fuzz '^FuzzFastHostFrames$$' -fuzztime $(FUZZTIME) ./plugins
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSegment$$' -fuzztime $(FUZZTIME) ./storage/bolt
	$(GO) test -run '^$$' -fuzz '^FuzzNextChainMatchesDefinition$$' -fuzztime $(FUZZTIME) ./storage
	$(GO) test -run '^$$' -fuzz '^FuzzHandlerMatchesJSONHandler$$' -fuzztime $(FUZZTIME) ./internal/logx

# Regenerate the storage plugin protocol's Go code (committed). Pinned:
# protoc 3.21.12 (Debian 12 bookworm's protobuf-compiler; the generated
# files record it), protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.5.1, the
# generators installed into bin/tools when missing or of another version.
PROTOC_VERSION         := 3.21.12
PROTOC_GEN_GO          := v1.36.12
PROTOC_GEN_GO_GRPC     := v1.5.1
proto:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler ($(PROTOC_VERSION))"; exit 1; }
	@protoc --version | grep -q ' $(PROTOC_VERSION)$$' || { echo "protoc $(PROTOC_VERSION) required, found: $$(protoc --version)"; exit 1; }
	@mkdir -p bin/tools
	@bin/tools/protoc-gen-go --version 2>/dev/null | grep -q ' $(PROTOC_GEN_GO)$$' || GOBIN=$(CURDIR)/bin/tools $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO)
	@bin/tools/protoc-gen-go-grpc --version 2>/dev/null | grep -q ' $(patsubst v%,%,$(PROTOC_GEN_GO_GRPC))$$' || GOBIN=$(CURDIR)/bin/tools $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC)
	cd plugins/proto && protoc --plugin=protoc-gen-go=$(CURDIR)/bin/tools/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(CURDIR)/bin/tools/protoc-gen-go-grpc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative storage.proto

# Certify a storage plugin: the whole storage conformance suite against the
# binary, through the host client rotor uses. PLUGIN_BACKEND is sent as
# ConfigureRequest.backend (each store gets a fresh file as .path);
# PLUGIN_POSTGRES=1 gives each store a fresh PostgreSQL schema as .dsn;
# PLUGIN_ARGS are its arguments. Examples:
#   go build -o bin/storage-plugin ./examples/storage-plugin
#   make conformance PLUGIN=bin/storage-plugin
#   make build && make conformance PLUGIN=bin/rotor PLUGIN_ARGS="plugin storage" PLUGIN_BACKEND=postgres PLUGIN_POSTGRES=1
PLUGIN_BACKEND  ?= bbolt
PLUGIN_ARGS     ?=
PLUGIN_POSTGRES ?=
.PHONY: conformance
conformance:
	@test -n "$(PLUGIN)" || { echo "usage: make conformance PLUGIN=path/to/binary [PLUGIN_BACKEND=name] [PLUGIN_ARGS=...] [PLUGIN_POSTGRES=1]"; exit 2; }
	@mkdir -p bin
	@ROTOR_CONFORMANCE_PLUGIN=$(abspath $(PLUGIN)) ROTOR_CONFORMANCE_BACKEND=$(PLUGIN_BACKEND) \
	ROTOR_CONFORMANCE_ARGS="$(PLUGIN_ARGS)" ROTOR_CONFORMANCE_POSTGRES=$(PLUGIN_POSTGRES) \
		$(GO) test -count=1 -v -run '^TestConformancePlugin$$' ./storage/storagetest/ > bin/conformance.log 2>&1; rc=$$?; \
	grep -E '^ *--- (PASS|FAIL|SKIP)|^(ok|FAIL)' bin/conformance.log; \
	if [ $$rc -ne 0 ]; then tail -40 bin/conformance.log; fi; exit $$rc

clean:
	rm -rf bin

# --- mutation testing (issue #13) -------------------------------------------
# Mutation testing by hand (never in CI): gremlins v0.6.0, pinned, installed
# into bin/. Each package runs over its security-critical files only (the
# rest are excluded), with generous test timeouts for a shared machine. One
# report per package in bin/mutation/ (<pkg>.json, and <pkg>.log with every
# mutant's status as it finishes). The whole run is bounded by
# MUTATION_MINUTES. Scores and the survivors' notes: docs/reliability.md.
# gremlins runs the package's whole test binary per mutant, so in vault the
# PostgreSQL, audit-outage and plugin-subprocess tests (most of its run time)
# are skipped through GOFLAGS=-skip: they cover no block of the mutated files
# that the kept tests do not cover (checked with -coverprofile), and a skip
# can only let a mutant live, never kill one, so the score is a lower bound.
# Not for vault's audit files, which those tests exercise. MUTATION_FULL=1
# runs every test. CI never runs this target.
GREMLINS            := bin/gremlins
MUTATION_WORKERS    ?= 2
MUTATION_COEFF      ?= 10
MUTATION_MINUTES    ?= 30
# The default set is what fits MUTATION_MINUTES on this 2-core machine
# (issue 13's target packages); the rest runs as a second, separate
# invocation: make mutation MUTATION_SET='$(MUTATION_REST)'
MUTATION_CORE       ?= template:rewrite.go,template.go \
	proxy:dial.go,internal.go \
	vault:hosts.go,crypto.go,apikeys.go
MUTATION_REST       ?= vault:auditchain.go \
	dispatch:dispatcher.go \
	storage/postgres:postgres.go \
	storage/bolt:bolt.go \
	plugins:wire.go
MUTATION_SET        ?= $(MUTATION_CORE)
.PHONY: mutation
mutation:
	@mkdir -p bin/mutation
	@test -x $(GREMLINS) || GOBIN=$(CURDIR)/bin $(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
	@end=$$(( $$(date +%s) + $(MUTATION_MINUTES) * 60 )); \
	for entry in $(MUTATION_SET); do \
		pkg=$${entry%%:*}; keep=",$${entry#*:},"; excl=""; \
		for f in $$(cd $$pkg && ls *.go | grep -v '_test\.go$$'); do \
			case "$$keep" in *",$$f,"*) ;; *) excl="$$excl -E ^$$(echo $$f | sed 's/\./\\./g')$$";; esac; \
		done; \
		left=$$(( end - $$(date +%s) )); \
		if [ $$left -le 0 ]; then echo "mutation: budget spent before $$pkg"; exit 1; fi; \
		skip=""; [ -n "$(MUTATION_FULL)" ] || case $$entry in vault:*audit*) ;; vault:*) skip="-skip=Postgres|Outage|Plugin";; esac; \
		echo "== $$pkg ($${entry#*:}), $${left}s left $${skip:+(tests $$skip)}"; \
		GOFLAGS="$$GOFLAGS $$skip" timeout $$left ./$(GREMLINS) unleash --workers $(MUTATION_WORKERS) --timeout-coefficient $(MUTATION_COEFF) \
			$$excl -o bin/mutation/$$(echo $$pkg | tr / _).json ./$$pkg | tee bin/mutation/$$(echo $$pkg | tr / _).log | \
			grep --line-buffered -E 'LIVED|TIMED OUT|Killed:|Mutator coverage|Test efficacy|Mutation testing completed'; \
	done
# ---- Packaging (issue 18): image, Helm chart, release artifacts ----------
# The builders live in build/, a module of its own, so go-containerregistry
# never enters Rotor's dependency graph. Every artifact is reproducible from
# one commit: times come from SOURCE_DATE_EPOCH (the commit time), paths
# are trimmed, and the version and commit are stamped with -ldflags.
COMMIT            ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS           += -X rotor.sh/rotor/cli.Commit=$(COMMIT)
STATIC_LDFLAGS     = -s -w $(LDFLAGS)
IMAGE_ARCH        ?= $(shell $(GO) env GOARCH)
IMAGE_NAME        ?= rotor
IMAGE_SOURCE      ?= https://rotor.sh/rotor
# Installed at /etc/ssl/certs/ca-certificates.crt in the image, so the proxy
# can verify upstream TLS on an empty base; the digest depends on this file.
IMAGE_CA_BUNDLE   ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
IMAGE_BIN          = bin/image/rotor-linux-$(IMAGE_ARCH)
IMAGE_TAR         ?= bin/rotor-image.tar
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
HELM_VERSION      := v3.22.0
HELM              := bin/tools/helm
CHART             := deploy/helm/rotor
CHART_EXAMPLE     := $(CHART)/ci/gateway-values.yaml

.PHONY: image image-test helm chart-lint k8s-manifests release lint-build

# The OCI image tarball (OCI layout + docker archive in one file): no Docker
# daemon, no base image. Load it with `docker load -i`, `kind load
# image-archive`, `ctr images import`, or push it with skopeo/crane.
image:
	@mkdir -p bin/image bin/tools
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "$(STATIC_LDFLAGS)" -o $(IMAGE_BIN) ./cmd/rotor
	cd build && $(GO) build -o ../bin/tools/rotor-image ./image
	bin/tools/rotor-image -binary $(IMAGE_BIN) -arch $(IMAGE_ARCH) -name $(IMAGE_NAME) \
		-version $(VERSION) -revision $(COMMIT) -source $(IMAGE_SOURCE) -created $(SOURCE_DATE_EPOCH) \
		$(if $(IMAGE_CA_BUNDLE),-ca-bundle $(IMAGE_CA_BUNDLE)) -out $(IMAGE_TAR) -digest-file bin/rotor-image.digest

# Opens the tarball, checks layers, user, entrypoint, env and labels, runs
# the binary inside (rotor version) and rebuilds it to the same digest.
# Without -race: build/ starts no goroutines of its own, and the detector
# makes hashing and gzipping the 20 MB layer about ten times slower
# (`cd build && go test -race ./...` passes too).
image-test: image
	cd build && ROTOR_IMAGE_TAR=$(CURDIR)/$(IMAGE_TAR) ROTOR_IMAGE_BINARY=$(CURDIR)/$(IMAGE_BIN) \
		ROTOR_IMAGE_DIGEST_FILE=$(CURDIR)/bin/rotor-image.digest $(GO) test -count=1 -timeout 15m ./...

# helm, pinned, built through the Go module proxy when missing.
helm: $(HELM)
$(HELM):
	GOBIN=$(CURDIR)/bin/tools $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

chart-lint: $(HELM)
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) -f $(CHART_EXAMPLE)

# configs/kubernetes/gateway.yaml is the chart rendered with the example
# values; deploy/chart_test.go fails when it is stale.
k8s-manifests: $(HELM)
	{ echo "# Generated by make k8s-manifests: deploy/helm/rotor rendered with"; \
	  echo "# deploy/helm/rotor/ci/gateway-values.yaml. Edit those, not this file."; \
	  $(HELM) template rotor $(CHART) --namespace rotor -f $(CHART_EXAMPLE); } > configs/kubernetes/gateway.yaml

# Static binaries for every platform, a CycloneDX SBOM beside each (from the
# binary's own build information), and SHA256SUMS over all of them.
release:
	rm -rf bin/release && mkdir -p bin/release bin/tools
	cd build && $(GO) build -o ../bin/tools/rotor-sbom ./sbom
	@set -e; for p in $(RELEASE_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; out=bin/release/rotor_$(VERSION)_$${os}_$${arch}; \
		echo "$$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(STATIC_LDFLAGS)" -o $$out ./cmd/rotor; \
		bin/tools/rotor-sbom -version $(VERSION) -created $(SOURCE_DATE_EPOCH) -out $$out.cdx.json $$out; \
	done
	cd bin/release && sha256sum rotor_* > SHA256SUMS && sha256sum -c --quiet SHA256SUMS
	@native=bin/release/rotor_$(VERSION)_$$($(GO) env GOOS)_$$($(GO) env GOARCH); \
		if [ -x $$native ]; then $$native version; fi

# The build/ module is vetted like the root one.
lint-build:
	cd build && $(GO) vet ./...

# make test also vets build/, lints the chart (the chart's Go tests in
# deploy/ need helm) and checks the image.
lint: lint-build
test: chart-lint image-test
