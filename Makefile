# bayesguard — the two commands.
#   make run   install what is missing, build, start the daemon with policies/
#              on $(ADDR) and on the unix socket $(RUN_SOCK)
#   make test  install what is missing, build, run the suite, then run it again
#              under AddressSanitizer + UndefinedBehaviorSanitizer, then build
#              the tree the ways users build it (gcc and clang; Release, Debug,
#              RelWithDebInfo), warnings as errors, without running it, then
#              run each libFuzzer harness of tests/fuzz for FUZZ_SECONDS
#  make fuzz   the same harnesses for longer: make fuzz FUZZ_SECONDS=600
#              [FUZZ="request policy"]  (docs/FUZZING.md)
#
# The project's own builds turn warnings into errors (BG_WERROR=ON); a plain
# `cmake -S . -B b` (a user's, a packager's) does not.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
ADDR       ?= 127.0.0.1:50051
FUZZ_BUILD ?= build-fuzz
# seconds per harness: the short budget of make test; `make fuzz` takes more
FUZZ_SECONDS ?= 10
FUZZ       ?=

.PHONY: all deps build build-asan build-matrix build-fuzz run test test-plain test-asan \
        test-fuzz fuzz bench clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBG_WERROR=ON
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBG_SANITIZE=ON -DBG_WERROR=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# The shipped policies key sessions by the caller's identity, which a unix
# socket gives (SO_PEERCRED); plain TCP cannot tell callers apart, so those
# policies answer FAILED_PRECONDITION there. make run serves both.
RUN_SOCK   ?= $(BUILD)/bayesguard.sock
run: build
	@echo "make run: the CLI reaches the socket with: export BAYESGUARD_ADDR=unix:$(abspath $(RUN_SOCK))"
	./$(BUILD)/daemon/bayesguardd --listen $(ADDR) --listen unix:$(abspath $(RUN_SOCK)) --policies policies --plugins $(BUILD)/plugins

test-plain: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 900

# compiler:build-type pairs built by build-matrix (the default build above is
# gcc:RelWithDebInfo). Each goes to build-<compiler>-<type>, its log
# to build-<compiler>-<type>/build-matrix.log (printed when it fails).
MATRIX ?= gcc:Release gcc:Debug clang:Release clang:Debug clang:RelWithDebInfo

build-matrix: deps
	@set -e; for m in $(MATRIX); do \
	  cc=$${m%%:*}; bt=$${m#*:}; d=build-$$cc-$$bt; \
	  printf 'build-matrix: %-6s %-15s ' $$cc $$bt; start=$$(date +%s); mkdir -p $$d; \
	  if CC=$$cc cmake -S . -B $$d -DCMAKE_BUILD_TYPE=$$bt -DBG_WERROR=ON > $$d/build-matrix.log 2>&1 && \
	     cmake --build $$d -j $(JOBS) >> $$d/build-matrix.log 2>&1; then \
	    echo "ok ($$(( $$(date +%s) - start )) s, warnings are errors)"; \
	  else echo FAILED; tail -n 60 $$d/build-matrix.log; exit 1; fi; \
	done

# The libFuzzer harnesses (tests/fuzz): clang, everything instrumented with
# -fsanitize=fuzzer-no-link,address,undefined; only their target is built.
build-fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBG_FUZZ=ON -DBG_WERROR=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target bg_fuzz

test-fuzz: build-fuzz
	./scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ)

fuzz: FUZZ_SECONDS = 600
fuzz: test-fuzz

test: test-plain test-asan build-matrix test-fuzz

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-gcc-* build-clang-*
