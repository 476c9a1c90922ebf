# The two README commands. Everything else lives in meson.build and scripts.
BUILD ?= build

.PHONY: all deps build run test bench clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@scripts/run-default.sh

test: build
	@tests/run.sh

bench: build
	@bench/run.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz
