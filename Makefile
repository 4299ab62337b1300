# matquant — build, test, demo.  `make help` lists the targets.
#
# Everything builds for baseline x86-64; ISA-specific kernel files
# (src/quant/kern_<isa>.c) get their flags from the per-file rules below and
# are chosen at run time.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
PKGS     = openblas libcjson libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(strip $(PKG_LIBS)),)
PKG_CFLAGS := -I/usr/include/x86_64-linux-gnu/openblas-pthread -I/usr/include/cjson
PKG_LIBS   := -lopenblas -lcjson -lpcre2-8
endif
WERROR  ?=
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Wshadow -Wvla $(WERROR) -fopenmp \
           -D_GNU_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) $(SAN)
LDLIBS  += $(PKG_LIBS) -lm -fopenmp $(SAN)

SRC     := $(sort $(wildcard src/*/*.c))
OBJ     := $(SRC:%.c=$(BUILD)/obj/%.o)
TOOLSRC := $(sort $(wildcard tools/*.c))
TOOLOBJ := $(TOOLSRC:%.c=$(BUILD)/obj/%.o)
TESTSRC := $(sort $(wildcard tests/test_*.c))
TESTBIN := $(TESTSRC:tests/%.c=$(BUILD)/tests/%)
LIB     := $(BUILD)/libmatquant.a

# per-ISA kernel files
$(BUILD)/obj/src/quant/kern_avx2.o:   CFLAGS += -mavx2 -mfma -mf16c
$(BUILD)/obj/src/quant/kern_avx512.o: CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c
$(BUILD)/obj/src/quant/kern_amx.o:    CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c -mamx-tile -mamx-int8
$(BUILD)/obj/src/nn/attn_avx512.o:     CFLAGS += -mavx512f -mfma
$(BUILD)/obj/src/nn/attn_avx2.o:       CFLAGS += -mavx2 -mfma

.PHONY: all test asan ubsan sanitize demo bench clean help deps golden
all: $(BUILD)/matquant

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/matquant: $(TOOLOBJ) $(LIB)
	$(CC) $(TOOLOBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c $(LIB) tests/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

test: $(BUILD)/matquant $(TESTBIN)
	@scripts/run_tests.sh $(BUILD)/tests $(BUILD)/matquant

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize:
	$(MAKE) BUILD=build-san OPT=-O1 SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" test
asan ubsan: sanitize

deps:
	@scripts/setup-deps.sh

# The main job: install what is missing, build, fetch the default model,
# generate text and measure perplexity.
demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

# The machine's ceilings (read bandwidth, FMA and VNNI peaks): bench/membw.c.
$(BUILD)/membw: bench/membw.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g -Wall -Wextra $(WERROR) -fopenmp -D_GNU_SOURCE $< -o $@

# Single-threaded cycles per weight of the packed kernels: bench/kernbench.c.
$(BUILD)/kernbench: bench/kernbench.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

# One core's rate of the decode kernel's inner step, operands in cache: bench/vnnimix.c.
$(BUILD)/vnnimix: bench/vnnimix.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g -Wall -Wextra $(WERROR) -D_GNU_SOURCE $< -o $@

# The AMX prompt kernel's inner step in stages: bench/amxmix.c.
$(BUILD)/amxmix: bench/amxmix.c src/quant/amx_config.h
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -O2 -g -Wall -Wextra $(WERROR) -Isrc -mavx512f -mamx-tile -mamx-int8 -D_GNU_SOURCE $< -o $@

bench: all $(BUILD)/membw $(BUILD)/kernbench $(BUILD)/vnnimix $(BUILD)/amxmix
	@bench/run.sh

golden:
	python3 scripts/make_golden.py

clean:
	rm -rf build build-san

help:
	@echo "make          build build/matquant"
	@echo "make test     build and run the test suite"
	@echo "make sanitize the test suite under ASan+UBSan (build-san/)"
	@echo "make demo     install dependencies, build, run the default model"
	@echo "make bench    benchmarks (bench/)"

-include $(OBJ:.o=.d) $(TOOLOBJ:.o=.d)
