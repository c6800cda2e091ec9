# libfrcnn build. Plain GNU make; every output goes under build/.
#   make            libraries (static + shared with soname) and example programs
#   make demo       the main job on built-in data
#   make test       the cmocka suite (installs missing Debian packages first)
#   make sanitize   the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      benchmarks: tables on stdout, figures in build/bench.tsv
#   make fuzz       the checkpoint reader under libFuzzer (needs clang), FUZZ_SECONDS=60
#   make install PREFIX=/usr/local DESTDIR=

VERSION_MAJOR := 0
VERSION := 0.1.0
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

BUILD ?= build
CC ?= cc
CFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
DEP_CFLAGS := $(shell pkg-config --cflags openblas stb cmocka 2>/dev/null)
DEP_LIBS := $(shell pkg-config --libs openblas stb 2>/dev/null || echo -lopenblas -lstb) -lm -lpthread
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

BASE_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L $(WARNINGS) $(CFLAGS) -Iinclude $(DEP_CFLAGS)
# GCC's -O2 vectorises only loops that need no run-time checks ("very cheap"), which leaves out most element-wise
# passes (ReLU, the optimizer, dropout); "cheap" takes them. Vectorising element-wise loops and sqrtf without errno
# changes no result: floating-point sums are never reordered (that would need -fassociative-math).
VECTORIZE := $(if $(findstring clang,$(CC)),,-fvect-cost-model=cheap) -fno-math-errno
LIB_CFLAGS := $(BASE_CFLAGS) $(VECTORIZE) -fPIC -fvisibility=hidden -DFRCNN_BUILDING_LIBRARY -Ilib/core

LIB_SRC := $(sort $(wildcard lib/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%) $(BUILD)/examples/train_voc
BENCH_SRC := $(sort $(wildcard tests/bench/*.c))
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

STATIC_LIB := $(BUILD)/libfrcnn.a
SHARED_LIB := $(BUILD)/libfrcnn.so.$(VERSION)
SONAME := libfrcnn.so.$(VERSION_MAJOR)
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all test demo sanitize bench fuzz install clean deps
TOOL_BIN := $(BUILD)/tools/synth_voc
all: $(STATIC_LIB) $(SHARED_LIB) $(EXAMPLE_BIN) $(TOOL_BIN)

# Installs (as root) or names (otherwise) the Debian packages we build against, once per build tree.
deps: $(DEPS_STAMP)
$(DEPS_STAMP): tools/ensure-deps.sh
	@sh tools/ensure-deps.sh
	@mkdir -p $(@D) && touch $@

# The Makefile is a prerequisite: a change of compiler flags rebuilds the library.
$(BUILD)/obj/%.o: %.c $(wildcard include/*.h lib/*/*.h) Makefile | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(STATIC_LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(DEP_LIBS)
	ln -sf libfrcnn.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libfrcnn.so

$(BUILD)/testutil.o: tests/testutil.c tests/testutil.h include/frcnn.h lib/train/ckpt_io.h | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Ilib/core -c $< -o $@

# Tests may reach internal (frcnn__) functions, so they link the static library.
$(BUILD)/tests/%: tests/%.c $(BUILD)/testutil.o $(STATIC_LIB) tests/testutil.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Ilib/core $< $(BUILD)/testutil.o $(STATIC_LIB) $(TEST_LIBS) $(DEP_LIBS) -o $@

$(BUILD)/examples/%: examples/%.c $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $< $(STATIC_LIB) $(DEP_LIBS) -o $@

# The trainer is an example too, in several files.
$(BUILD)/examples/train_voc: $(wildcard examples/train_voc/*.c examples/train_voc/*.h) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(filter %.c,$^) $(STATIC_LIB) $(DEP_LIBS) -o $@

# Tools that make data: the synthetic VOC dataset generator.
$(BUILD)/tools/%: tools/%.c $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $< $(STATIC_LIB) $(DEP_LIBS) -o $@

$(BUILD)/bench/%: tests/bench/%.c tests/bench/bench_util.h $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Ilib/core $< $(STATIC_LIB) $(DEP_LIBS) -o $@

# Examples that check their own result run with the suite. Tests, demo and bench run with OpenBLAS's fast kernel
# on CPUs its detection does not know (tools/blas-env.sh; a value already in the environment is kept).
SELF_CHECKING_EXAMPLES := $(BUILD)/examples/tiny_classifier
END_TO_END_TESTS := tests/e2e_train_voc.sh

test: all $(TEST_BIN)
	@env $$(sh tools/blas-env.sh) BUILD=$(BUILD) sh tests/run.sh $(TEST_BIN) $(SELF_CHECKING_EXAMPLES) $(END_TO_END_TESTS)

# The main job on built-in data: synthetic VOC data, training killed with SIGKILL and resumed, evaluation, pictures
# (tools/demo.sh; DEMO_ITERS sets the length of training).
demo: all
	env $$(sh tools/blas-env.sh) BUILD=$(BUILD) sh tools/demo.sh

sanitize:
	$(MAKE) BUILD=build/sanitize CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

# With Debian's python3-torch and python3-torchvision present, the same architectures run in torchvision too.
TORCH_PYTHON ?= /usr/bin/python3
bench: all $(BENCH_BIN)
	@rm -f $(BUILD)/bench.tsv
	@for b in $(BENCH_BIN); do env $$(sh tools/blas-env.sh) $$b $(BUILD)/bench.tsv || exit 1; done
	@if $(TORCH_PYTHON) -c "import torchvision" 2>/dev/null; then \
		$(TORCH_PYTHON) tools/torch_reference/bench_torchvision.py $(BUILD)/bench.tsv; \
	else echo "(torchvision comparison skipped: apt-get install python3-torchvision)"; fi

# Fuzzes the checkpoint reader with libFuzzer (clang) under ASan + UBSan for FUZZ_SECONDS, starting from real
# checkpoints. Findings are written to build/fuzz/ as crash-* files.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v clang >/dev/null || { echo "make fuzz needs clang with libFuzzer: apt-get install -y clang"; exit 1; }
	$(MAKE) BUILD=build/fuzz CC=clang CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" build/fuzz/libfrcnn.a
	clang $(BASE_CFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined -Ilib/core tests/fuzz/fuzz_ckpt.c build/fuzz/libfrcnn.a $(DEP_LIBS) -o build/fuzz/fuzz_ckpt
	clang $(BASE_CFLAGS) -O1 -g -fsanitize=fuzzer-no-link,address,undefined -Ilib/core tests/fuzz/fuzz_seed.c build/fuzz/libfrcnn.a $(DEP_LIBS) -o build/fuzz/fuzz_seed
	@mkdir -p build/fuzz/corpus && build/fuzz/fuzz_seed build/fuzz/corpus
	cd build/fuzz && ./fuzz_ckpt -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 corpus

$(BUILD)/frcnn.pc: Makefile
	@mkdir -p $(@D)
	printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: frcnn\nDescription: Faster R-CNN training and inference on the CPU\nVersion: %s\nRequires.private: openblas stb\nLibs: -L$${libdir} -lfrcnn\nLibs.private: -lm -lpthread\nCflags: -I$${includedir}\n' \
		'$(PREFIX)' '$(LIBDIR)' '$(INCLUDEDIR)' '$(VERSION)' > $@

install: $(STATIC_LIB) $(SHARED_LIB) $(BUILD)/frcnn.pc
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 644 include/frcnn.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libfrcnn.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libfrcnn.so
	install -m 644 $(BUILD)/frcnn.pc $(DESTDIR)$(LIBDIR)/pkgconfig/

clean:
	rm -rf $(BUILD)
