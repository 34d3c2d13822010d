# tftpgw: see README.md. Every target works on a fresh machine with Go 1.26.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

BUF_VERSION := v1.75.0
# staticcheck 2026.2.2 is module version v0.8.2; the module proxy serves
# only the module version (a fresh machine's go install of @2026.2.2 gets 403).
STATICCHECK_VERSION := v0.8.2
RUN_ADDR ?= 127.0.0.1:6969
FUZZTIME ?= 60s

# Fuzz targets are discovered, not listed: `go test -list` in every
# package whose test files define a func Fuzz. In `make test` each runs for
# a budget of inputs, about 3 s on a 2-core CI machine: FUZZ_INPUTS, or its
# entry in FUZZ_BUDGETS (Target=N, by target name) for the slower ones. A
# count, because with a duration Go 1.26's fuzzing coordinator can report
# "context deadline exceeded" as a failure when the time runs out while a
# worker is in the middle of an input (go.dev/issue/75804, fixed in Go
# 1.27); it failed CI once here.
FUZZ_INPUTS ?= 200000
FUZZ_BUDGETS := \
	FuzzNegotiate=100000 \
	FuzzReader=50000 \
	FuzzSession=50

# fuzz_targets prints every fuzz target as import/path:Target, one a line.
fuzz_targets = \
	pkgs=$$($(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | \
		while read -r pkg dir; do if grep -qs '^func Fuzz' "$$dir"/*_test.go; then echo "$$pkg"; fi; done); \
	[ -z "$$pkgs" ] || $(GO) test -run='^$$' -list='^Fuzz' $$pkgs | \
		awk '/^Fuzz/ { t[n++] = $$1; next } /^ok/ { for (i = 0; i < n; i++) print $$2 ":" t[i]; n = 0 }'

.PHONY: all build run test test-clients unit fuzz fuzz-short fuzz-list bench bench-go bench-fleet soak lint proto proto-check tools clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

## run: serve examples/tftproot on $(RUN_ADDR) with the embedded backend.
run: build examples/tftproot/vmlinuz examples/tftproot/initrd.img
	./bin/tftpgw -listen $(RUN_ADDR) -root examples/tftproot

# Stand-ins for a kernel and an initrd, so large transfers can be tried.
examples/tftproot/vmlinuz:
	head -c 1048576 /dev/urandom > $@
examples/tftproot/initrd.img:
	head -c 8388608 /dev/urandom > $@

## test: install missing TFTP clients, the example backends' runtimes and systemd-analyze (as root), then vet, race tests and a short fuzz run.
test: test-clients unit fuzz-short

test-clients:
	@./.ci/install-clients
	@./.ci/install-examples
	@./.ci/install-deploy

# examples/deploy is a module of its own (its tests need the Kubernetes,
# compose and BuildKit modules, which the main module should not depend
# on): ./... does not reach it, so it is vetted and tested here. Without
# -race: its tests drive processes one at a time (no shared memory to
# race on; they pass with -race too), and -race would compile those large
# modules a second time after vet: about 2 CPU-minutes more on a fresh
# machine.
unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	cd examples/deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...

## fuzz-list: print every fuzz target (discovered) as package:Target.
fuzz-list:
	@set -eo pipefail; $(fuzz_targets)

## fuzz-short: every fuzz target for its budget of inputs (see FUZZ_INPUTS).
fuzz-short:
	@set -eo pipefail; targets=$$($(fuzz_targets)); \
	if [ -z "$$targets" ]; then echo "no fuzz targets found"; exit 1; fi; \
	for b in $(FUZZ_BUDGETS); do \
		if ! grep -q ":$${b%%=*}$$" <<<"$$targets"; then echo "FUZZ_BUDGETS: no fuzz target $${b%%=*}"; exit 1; fi; \
	done; \
	for t in $$targets; do \
		pkg=$${t%:*}; name=$${t##*:}; n=$(FUZZ_INPUTS); \
		for b in $(FUZZ_BUDGETS); do if [ "$${b%%=*}" = "$$name" ]; then n=$${b#*=}; fi; done; \
		echo "fuzz $$pkg $$name $${n}x"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$${n}x $$pkg; \
	done

## fuzz: run every fuzz target for FUZZTIME (default 60s).
fuzz:
	@set -eo pipefail; targets=$$($(fuzz_targets)); \
	if [ -z "$$targets" ]; then echo "no fuzz targets found"; exit 1; fi; \
	for t in $$targets; do \
		pkg=$${t%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

## bench: tftpgw (embedded and through tftp-backend) against tftpd-hpa,
## atftpd and dnsmasq, side by side, driven by tftpbench (run.sh, which runs
## fleet.sh too); writes BENCHMARKS.md (root).
bench: bench-go
	./testdata/bench/run.sh

## bench-fleet: only the fleet's scenarios (small requests, UEFI windowed,
## boot storm; BENCH_LONG=1 adds 1,000 machines); writes /tmp/tftpgw-bench-fleet.md.
bench-fleet:
	./testdata/bench/fleet.sh

## bench-go: Go micro-benchmarks of the packet path (-benchmem).
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem ./gateway/ ./gateway/internal/...

SOAK ?= 5m
## soak: tftpgw under mixed, lossy load with backend kill -9/restarts for $(SOAK) (not in CI).
soak:
	TFTPGW_SOAK=$(SOAK) $(GO) test -run '^TestSoak$$' -count=1 -timeout 30m -v ./cmd/tftpgw/

tools:
	@command -v buf >/dev/null && buf --version 2>/dev/null | grep -q $(BUF_VERSION:v%=%) || $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@command -v staticcheck >/dev/null && staticcheck -version 2>/dev/null | grep -q '($(STATICCHECK_VERSION:v%=%))' || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## lint: gofmt, go vet, staticcheck, buf lint and buf format; the packages build for macOS too.
# The server is Linux's, but the gateway package (a handler in-process) and
# the tools build elsewhere through the *_other.go files: building for
# darwin keeps those in step with the Linux ones. The tests are Linux's.
lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) build ./...
	staticcheck ./...
	cd examples/deploy && $(GO) vet ./... && staticcheck ./...
	@if [ -n "$$(find proto -name '*.proto' 2>/dev/null)" ]; then buf lint && buf format -d --exit-code; fi

## proto: regenerate the Go code of proto/ (committed).
proto: tools
	buf generate

## proto-check: fail if the committed generated code is stale.
proto-check: proto
	@git diff --exit-code -- proto || { echo "generated code in proto/ is stale: run make proto and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto | grep '^??')" || { echo "untracked generated files in proto/"; exit 1; }

clean:
	rm -rf bin
