# bayesguard — the two commands.
#   make run   install what is missing, build, start the daemon with policies/
#   make test  install what is missing, build, run the suite, then run it again
#              under AddressSanitizer + UndefinedBehaviorSanitizer
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
ADDR       ?= 127.0.0.1:50051

.PHONY: all deps build build-asan run test test-plain test-asan bench clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBG_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)

run: build
	./$(BUILD)/daemon/bayesguardd --listen $(ADDR) --policies policies --plugins $(BUILD)/plugins

test-plain: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 900

test: test-plain test-asan

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
