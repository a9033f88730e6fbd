# jemc — build, test and fuzz.
#   make            build/jemc and build/libjemrt.a (installs missing Debian packages first)
#   make test       build and run the TAP suite with prove
#   make test SAN=1 the same suite under AddressSanitizer + UBSan (in build-san/)
#   make fuzz       build a libFuzzer harness and run it (FUZZER=frontend|safetensors|data|table, FUZZ_SECONDS=60)
#   make deps       install what is missing (Debian packages), nothing else
#   make bench      jemc against PyTorch (bench/run.sh) and the kernels against the FMA peak
#   make demo       train JEM on MNIST on the CPU, then sample digits (tools/demo.sh, ~11 min on 2 cores)
#   make demo-vera  the same with VERA's generator instead of SGLD chains (tools/vera_demo.sh, <= 15 min)
LLVM_CONFIG ?= llvm-config-19
CC          ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif

ifeq ($(SAN),1)
B        := build-san
OPT      := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# executables jemc links against this (sanitized) runtime need the sanitizers too
OPT      += -DJM_LINK_EXTRA='"-fsanitize=address,undefined"'
else
B        := build
OPT      := -O2
endif

# Warnings are errors in CI (CI=true) or with WERROR=1.
WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter
ifneq ($(filter true 1,$(CI) $(WERROR)),)
WARN += -Werror
endif

CFLAGS   := -std=c11 -g $(OPT) $(WARN) -D_GNU_SOURCE -fopenmp -Icompiler -Iruntime -Icodegen
# Expanded when a recipe runs, i.e. after deps-build has installed LLVM 19.
LLVM_CFLAGS  = $(shell $(LLVM_CONFIG) --includedir | sed 's/^/-isystem /')
LLVM_LDFLAGS = $(shell $(LLVM_CONFIG) --ldflags --libs --system-libs)
# the runtime's libraries: images (libpng, giflib), plots (cairo), extern calls (libffi, dl)
RT_LIBS   := -lpng -lgif -lcairo -lffi -ldl
LDLIBS    = -fopenmp -lm $(RT_LIBS) $(LLVM_LDFLAGS)

COMPILER_SRC := $(filter-out compiler/main.c,$(wildcard compiler/*.c)) $(wildcard codegen/*.c)
# runtime/ in layers (runtime/README.md): engine/, gpu/ beside it, app/ on top. gpu/dev_lib.c is
# device code (NVPTX bitcode below), app/rt_main.c the executables' main().
# runtime/dist/dist_mpi.c is the MPI shim, a library of its own (below).
RUNTIME_SRC  := $(filter-out runtime/app/rt_main.c runtime/gpu/dev_lib.c runtime/dist/dist_mpi.c,$(wildcard runtime/*/*.c))
TEST_SRC     := $(wildcard tests/t_*.c)
COMPILER_OBJ := $(COMPILER_SRC:%.c=$(B)/%.o)
RUNTIME_OBJ  := $(RUNTIME_SRC:%.c=$(B)/%.o)
TEST_BIN     := $(TEST_SRC:tests/%.c=$(B)/tests/%)
# bench/gpu's tools (bench/gpu/check.sh on a GPU machine, which has no LLVM): st_compare
# compares safetensors files by the tests' rule, st_inputs writes a program's test inputs
GPU_TOOLS    := $(B)/st_compare $(B)/st_inputs

.PHONY: all deps deps-build deps-test deps-cuda test fuzz fuzz-merge fuzz-seeds clean bench demo demo-vera
all: deps-build $(B)/jemc $(B)/libjemrt.a $(B)/jemrt_main.o $(B)/jemrt_dev.bc $(GPU_TOOLS) $(B)/libjemc_dist.so

deps:
	@tools/deps.sh fuzz
deps-build:
	@tools/deps.sh build --check 2>/dev/null || tools/deps.sh build
deps-test:
	@tools/deps.sh test --check 2>/dev/null || tools/deps.sh test
# CUDA's ptxas and libdevice for --target cuda (tools/cuda_tools.sh), unpacked into
# $(B)/cuda-tools where jemc finds them; without them the GPU tests skip, saying so.
deps-cuda:
	@tools/cuda_tools.sh $(B)/cuda-tools || echo "make deps-cuda: could not fetch ptxas and libdevice; the GPU tests will skip" >&2

$(B)/%.o: %.c $(wildcard compiler/*.h compiler/*.def runtime/*/*.h codegen/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
# Only codegen/ sees LLVM's headers (it also includes the compiler's and runtime's).
$(B)/codegen/%.o: codegen/%.c $(wildcard codegen/*.h compiler/*.h compiler/*.def runtime/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LLVM_CFLAGS) -c $< -o $@

$(B)/libjemc.a: $(COMPILER_OBJ)
	ar rcs $@ $^
$(B)/libjemrt.a: $(RUNTIME_OBJ)
	ar rcs $@ $^

# main() of the executables jemc writes (linked by `jemc compile`, next to libjemrt.a)
$(B)/jemrt_main.o: $(B)/runtime/app/rt_main.o
	cp $< $@

# The MPI shim (runtime/dist/README.md), beside jemc, where the executables' RUNPATH finds it.
# mpicc is looked for when the recipe runs, after deps-build has installed Open MPI; without
# it the shim is left out, saying so, and everything else builds (only launched runs need it).
DIST_CFLAGS = -std=c11 -g -O2 $(WARN) -D_GNU_SOURCE -Iruntime -shared -fPIC
$(B)/libjemc_dist.so: runtime/dist/dist_mpi.c runtime/engine/rt_coll.h | deps-build
	@mkdir -p $(dir $@)
	@if command -v mpicc >/dev/null 2>&1; then \
	    echo "mpicc $(DIST_CFLAGS) $< -o $@"; mpicc $(DIST_CFLAGS) $< -o $@; \
	else echo "make: no mpicc: $@ not built (multi-process runs need it; tools/deps.sh build installs Open MPI)" >&2; fi

# The runtime's GPU library kernels (runtime/gpu/dev_lib.c) as NVPTX bitcode, which
# `jemc compile --target cuda` links into every GPU executable's PTX module. No CUDA
# toolkit needed: clang's own NVPTX target, freestanding. -ffp-contract=off: clang's
# default (on) fuses `a + (b - a) * u` and `mean + std * z` into FMAs, which round
# once where the CPU's Philox (engine/philox.h) rounds twice, so the GPU's random
# numbers would differ from the CPU's in the last bit (t_cuda checks the bitcode).
DEV_CFLAGS = --target=nvptx64-nvidia-cuda -march=sm_75 -O2 -std=c11 -ffreestanding -nostdlibinc -ffp-contract=off \
              -isystem $(shell clang-19 -print-resource-dir 2>/dev/null)/include -Wall -Wextra -Werror
$(B)/jemrt_dev.bc: runtime/gpu/dev_lib.c runtime/engine/philox_core.h runtime/engine/index_rule.h Makefile
	@mkdir -p $(dir $@)
	clang-19 $(DEV_CFLAGS) -emit-llvm -c $< -o $@

$(B)/jemc: $(B)/compiler/main.o $(B)/libjemc.a $(B)/libjemrt.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(B)/tests/%: tests/%.c $(B)/libjemc.a $(B)/libjemrt.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(B)/libjemc.a $(B)/libjemrt.a $(LDLIBS) -o $@

# Only the safetensors reader and libm: they run where the executables run, and are carried with them.
$(GPU_TOOLS): $(B)/st_%: bench/gpu/st_%.c runtime/engine/safetensors.c runtime/engine/safetensors.h runtime/engine/rt_table.h tests/compare_rule.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -g $(OPT) $(WARN) -D_GNU_SOURCE -Iruntime -Itests $< runtime/engine/safetensors.c -lm -o $@

# A CPU stand-in for the CUDA driver, cuBLAS and cuDNN (t_cuda tests the GPU runtime's host side with it).
$(B)/tests/libfakecuda.so: tests/fake_cuda.c runtime/gpu/dev_lib.c runtime/engine/philox_core.h runtime/engine/index_rule.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g $(OPT) $(WARN) -fPIC -shared -fvisibility=hidden -Iruntime $< -o $@ -lm -ldl
# A CPU stand-in for NCCL over MPI (t_nccl tests runtime/dist/dist_nccl.c with it). Like the MPI
# shim, built only where mpicc exists; without it t_nccl skips, saying so.
$(B)/tests/libfakenccl.so: tests/fake_nccl.c | deps-build
	@mkdir -p $(dir $@)
	@if command -v mpicc >/dev/null 2>&1; then \
	    echo "mpicc $(DIST_CFLAGS) -fvisibility=hidden $< -o $@"; mpicc $(DIST_CFLAGS) -fvisibility=hidden $< -o $@; \
	else echo "make: no mpicc: $@ not built (t_nccl skips without it)" >&2; fi
# An LD_PRELOAD library that records open/write/fsync/rename calls (t_guard checks the
# checkpoint write protocol with it). Not sanitized: under SAN=1 the test preloads the ASan runtime first.
$(B)/tests/libioshim.so: tests/io_shim.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 $(WARN) -fPIC -shared -fvisibility=hidden $< -o $@ -ldl

# Tests run from the repository root; they find the compiler as $JEMC.
test: deps-test deps-cuda all $(TEST_BIN) $(B)/tests/libfakecuda.so $(B)/tests/libfakenccl.so $(B)/tests/libioshim.so
	JEMC=$(B)/jemc JM_BUILD=$(B) prove -f --exec '' $(TEST_BIN)

# libFuzzer harnesses (tests/fuzz/): FUZZER=frontend (the default: lexer, parser, elaboration,
# the passes) or a file reader: safetensors (checkpoints, --in files), data (IDX, CIFAR, CSV),
# table (the program table an executable parses at start). Each has its corpus in
# tests/fuzz/corpus-$(FUZZER) (the front end's: tests/fuzz/corpus); crashers land in tests/fuzz/crashers/.
#   make fuzz FUZZER=safetensors FUZZ_SECONDS=1800
FUZZER       ?= frontend
FUZZ_SECONDS ?= 60
FUZZ_READERS := safetensors data table
FUZZ_CORPUS   = $(if $(filter frontend,$(FUZZER)),tests/fuzz/corpus,tests/fuzz/corpus-$(FUZZER))
FUZZ_PREFIX   = tests/fuzz/crashers/$(if $(filter frontend,$(FUZZER)),,$(FUZZER)-)
FUZZ_DICT     = $(if $(filter frontend,$(FUZZER)),-dict=tests/fuzz/graph.dict)
fuzz: $(B)/fuzz_$(FUZZER)
	@mkdir -p $(FUZZ_CORPUS)-new tests/fuzz/crashers
	# a 2 MiB stack (a quarter of the usual 8) makes runaway recursion crash here first
	ulimit -s 2048 && $(B)/fuzz_$(FUZZER) -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_PREFIX) $(FUZZ_DICT) \
	    $(FUZZ_CORPUS)-new $(FUZZ_CORPUS)
# Folds what a fuzzing run found into the kept corpus (smallest set with the same coverage).
fuzz-merge: $(B)/fuzz_$(FUZZER)
	@mkdir -p $(FUZZ_CORPUS)-min $(FUZZ_CORPUS)-new
	$(B)/fuzz_$(FUZZER) -merge=1 $(FUZZ_CORPUS)-min $(FUZZ_CORPUS) $(FUZZ_CORPUS)-new
	rm -rf $(FUZZ_CORPUS) $(FUZZ_CORPUS)-new && mv $(FUZZ_CORPUS)-min $(FUZZ_CORPUS)
$(B)/fuzz_frontend: tests/fuzz/fuzz_frontend.c $(filter compiler/%,$(COMPILER_SRC)) runtime/engine/safetensors.c runtime/engine/rt_table.c runtime/engine/names.c runtime/engine/rt_extern.c
	@tools/deps.sh fuzz --check 2>/dev/null || tools/deps.sh fuzz
	@mkdir -p $(dir $@)
	clang-19 -std=c11 -g -O1 -D_GNU_SOURCE -Icompiler -Iruntime -fsanitize=fuzzer,address,undefined \
	    $^ -lm -lffi -ldl -o $@
# The readers' harnesses: the readers and what the runtime does with their results, without
# OpenMP (fuzz_host_device.h stands in for rt_cpu.c) and without running programs; undefined
# behaviour stops the run (and leaves a crasher), as a sanitizer error does.
FUZZ_READER_SRC := runtime/engine/safetensors.c runtime/engine/rt_state.c runtime/engine/rt_exec.c runtime/engine/rt_table.c \
                   runtime/engine/rt_knobs.c runtime/engine/names.c runtime/engine/rt_extern.c runtime/app/data.c
$(FUZZ_READERS:%=$(B)/fuzz_%): $(B)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_READER_SRC) $(wildcard tests/fuzz/*.h runtime/*/*.h)
	@tools/deps.sh fuzz --check 2>/dev/null || tools/deps.sh fuzz
	@mkdir -p $(dir $@)
	clang-19 -std=c11 -g -O1 -D_GNU_SOURCE -Iruntime -Itests/fuzz -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    $< $(FUZZ_READER_SRC) -lm -lffi -ldl -o $@
# Rewrites the readers' seed corpora from files jemc's own writers make (tests/fuzz/gen_seeds.c).
FUZZ_SEED_GRAPHS := tests/train/tiny.graph graphs/mlp_tabular.graph tests/parity/layers.graph examples/extern_energy/denoise.graph
fuzz-seeds: all $(B)/tests/fuzz/gen_seeds
	$(B)/tests/fuzz/gen_seeds $(FUZZ_SEED_GRAPHS)

# Speed (never part of `make test`): jemc against PyTorch side by side, then the
# runtime's convolution and matmul kernels against the machine's FMA peak.
$(B)/bench_kernels: bench/bench_kernels.c $(B)/libjemrt.a
	$(CC) $(CFLAGS) $< $(B)/libjemrt.a -fopenmp -lm -o $@
# one gradient exchange between MPI processes (bench/dp_scaling.sh runs it under mpirun)
$(B)/bench_allreduce: bench/bench_allreduce.c $(B)/libjemrt.a
	$(CC) $(CFLAGS) $< $(B)/libjemrt.a -fopenmp -ldl -lm -Wl,-rpath,$(abspath $(B)) -o $@
bench: all $(B)/bench_kernels
	bench/run.sh
	$(B)/bench_kernels

clean:
	rm -rf build build-san

# A JEM learns MNIST and dreams up digits: pictures and figures in build/demo/
demo: deps-build
	tools/demo.sh

# JEM-VERA learns MNIST with a generator for negatives: pictures and figures in build/demo-vera/
demo-vera: deps-build
	tools/vera_demo.sh

# Breaks the code on purpose, in a copy of the tree, and expects the named test to fail each
# time (tests/mutations/*.patch; never part of `make test`: tens of minutes on 2 cores).
.PHONY: mutations
mutations:
	tests/mutations/run.sh
