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

# Every fuzz target, as package:Target:N, N being its budget in `make test`:
# a number of inputs, about 3 s on a 2-core CI machine. A count, because
# with a duration Go 1.26's fuzzing coordinator can report "context
# deadline exceeded" as a failure when the time runs out while a worker is
# in the middle of an input (go.dev/issue/75804, fixed in Go 1.27); it
# failed CI once here.
FUZZ_TARGETS := \
	./internal/wire:FuzzParseRequest:200000 \
	./internal/wire:FuzzParseData:200000 \
	./internal/wire:FuzzParseAck:200000 \
	./internal/wire:FuzzParseError:200000 \
	./internal/wire:FuzzParseOACK:200000 \
	./internal/wire:FuzzPacketOpcode:200000 \
	./gateway/internal/netascii:FuzzReader:50000 \
	./gateway:FuzzSession:50

.PHONY: all build run test test-clients unit fuzz fuzz-short bench bench-go soak lint proto proto-check tools clean

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

## test: install missing TFTP clients and the example backends' runtimes (as root), then vet, race tests and a short fuzz run.
test: test-clients unit fuzz-short

test-clients:
	@./.ci/install-clients
	@./.ci/install-examples

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

## fuzz-short: every fuzz target for its budget of inputs (see FUZZ_TARGETS).
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest##*:}; \
		echo "fuzz $$pkg $$name $${n}x"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$${n}x $$pkg; \
	done

## fuzz: run every fuzz target for FUZZTIME (default 60s).
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; \
		echo "fuzz $$pkg $$name $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

## bench: tftpgw (embedded and through tftp-backend) against tftpd-hpa and
## atftpd, side by side, driven by tftpbench; writes BENCHMARKS.md (root).
bench: bench-go
	./testdata/bench/run.sh

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

## lint: gofmt, go vet, staticcheck, buf lint and buf format.
lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...
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
