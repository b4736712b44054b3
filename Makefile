# Vantage: the README's two commands are `make demo` (the main job) and `make test` (every test).
# Both install what they need on a fresh Debian machine with Go: Debian packages with apt-get, Go modules
# through the module proxy.

GO ?= go
# Packages whose tests time packets on the emulated WAN (the emulator's own and the whole-system tests of e2e/)
# run without the race detector, which would distort the delays they check, one package at a time (-p 1) so
# that no other test binary competes with the router; every other package runs with the race detector.
TIMED_PKGS := ./testbed/... ./e2e/...
RACE_PKGS = $(shell $(GO) list ./... | grep -v -e '/testbed' -e '/e2e')

.PHONY: test demo deps bench build fuzz-short ui-assets

build:
	$(GO) build -buildvcs=auto -o bin/vantage ./cmd/vantage

deps:
	@bash .ci/deps.sh

# The status page's vendored map libraries and Natural Earth data (scheduler/ui/static/vendor), fetched from
# the npm registry at pinned versions; TestVendoredAssets checks the committed files against its SHA256SUMS.
ui-assets:
	@bash scheduler/ui/vendor.sh

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	$(GO) test -p 1 -count=1 -timeout 20m $(TIMED_PKGS)
	$(MAKE) fuzz-short

# A short run of every fuzzer over its committed corpus (<package>/testdata/fuzz/<FuzzName>/) and beyond: the
# config parsers (placement), the decoders of values read from Redis (storage), and the HTTP API's POST handlers
# (scheduler: apps, ad-hoc probes, telemetry; on an embedded miniredis, no Redis server needed). Each entry is
# package:target. The budgets are counts of executions (10 to 50 s each on the shared 2-core machine, about
# 5 minutes in all), not durations: with a duration, Go 1.26's fuzz coordinator can report the deadline itself
# as a failure, "context deadline exceeded" with no crasher written (golang/go#75804, fixed in Go 1.27); it
# failed `make test` that way. The budgets bound the work; -timeout only catches a stuck run: FuzzAPITelemetry
# took 60 s on a quiet machine and 300 s beside two `go build -a` loops (2026-12-04), half of go test's default
# 10 minutes.
FUZZ_TARGETS := \
	./placement:FuzzParseWranglerTOML ./placement:FuzzParseWranglerJSONC ./placement:FuzzFormatsAgree \
	./placement:FuzzHost ./placement:FuzzHostname \
	./storage:FuzzDecodeDecision ./storage:FuzzDecodeJob ./storage:FuzzDecodeApp ./storage:FuzzDecodeResult \
	./storage:FuzzDecodeTelemetry \
	./scheduler:FuzzAPIApps ./scheduler:FuzzAPIProbes ./scheduler:FuzzAPITelemetry
FUZZ_TIME ?= 100000x
fuzz-short:
	@for pt in $(FUZZ_TARGETS); do \
		pkg=$${pt%%:*}; f=$${pt#*:}; \
		$(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZ_TIME) -fuzzminimizetime=20000x -timeout 30m $$pkg || exit 1; \
	done

demo: deps
	$(GO) run ./cmd/vantage demo

# Side-by-side benchmarks against peers (blackbox_exporter, fping, hping3, curl); BENCH_FLAGS are passed on
# (go run ./bench -h lists them).
bench:
	@bash .ci/deps.sh bench
	$(GO) run ./bench $(BENCH_FLAGS)
