# sublog: `make demo` runs the main job on an embedded default, `make test` runs the tests.
GO        ?= go
BIN       := bin/sublog
FUZZTIME  ?= 30s
# Execs the engine may spend minimizing each new interesting input. Go's
# default is 60 s of time, during which a worker reports no execs (a run
# looks stalled); a time limit that expires kills the worker and drops the
# count of what it ran. A count ends the minimization cleanly.
FUZZMINTIME ?= 1000x
BENCHTIME ?= 1x
export CGO_ENABLED := 1
# Race-built processes otherwise sleep 1 s at exit; tests start many of them.
export GORACE ?= atexit_sleep_ms=0

.PHONY: build test demo demo-hosts bench bench-hypercore fuzz lint examples clean

build:
	$(GO) build -o $(BIN) ./cli/sublog

# vet, the whole suite with the race detector (which includes the layering
# test that keeps ARCHITECTURE.md's code map true).
test: examples
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...

demo: build examples
	bash examples/demo.sh $(BIN)

# The spec pack's Phase 1 demo across separate hosts (network namespaces as
# root, else processes on 127.0.15.x): examples/phase1/bed.sh.
demo-hosts: build examples
	$(GO) build -o bin/faultylink ./examples/phase1/faultylink
	$(GO) build -o bin/hintdns ./examples/phase1/hintdns
	bash examples/phase1/bed.sh

# Benchmarks report ratios against the raw limits measured in the same run
# (see BENCHMARKS.md). BENCHTIME=3s for steadier figures.
bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 ./... | tee bench.out

# Side by side with Hypercore (issue 17; not part of test or bench): npm
# installs the pinned hypercore into bench/hypercore/node_modules (ignored by
# git), then sublog's 100,000-card sync and Hypercore's two-process
# replication of the same entries run interleaved, ROUNDS (5) rounds, medians.
bench-hypercore:
	cd bench/hypercore && npm ci --no-audit --no-fund
	bash bench/hypercore/compare.sh

# Every Fuzz target in the tree for FUZZTIME each, then the long crash test.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
	  dir=$$(dirname $$f); \
	  for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "== $$dir $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$dir; \
	  done; \
	done
	SUBLOG_CRASH_KILLS=300 $(GO) test -run TestCrash -count=1 -timeout 20m ./log

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# WASM example micro-apps (added by the executor); a no-op until they exist.
examples:
	@if [ -f examples/Makefile.inc ]; then $(MAKE) -f examples/Makefile.inc all; fi

clean:
	rm -rf bin bench.out
