# hyblua — plain GNU make. Targets: all (./hyblua), run, test, check-anchors, bench, asan, valgrind, fuzz, data, clean, deps.
# Layers, each including only those below it: lua/ → io/ → core/ → kernels/ (tests/scripts/include_graph.sh checks).
# kernels/, core/ and io/ build into build/libhbcore.a without Lua; lua/ adds the binding and the executable.

PKGS      := lua5.4 openblas yaml-0.1 libcjson libedit
CC        ?= gcc
OPT       ?= -O3 -march=native
CFLAGS    += $(OPT) -g -std=c11 -Ikernels -Icore -Wall -Wextra -D_GNU_SOURCE -fno-fast-math
CORE_CFLAGS := $(shell pkg-config --cflags openblas yaml-0.1 libcjson 2>/dev/null)
CORE_LIBS   := $(shell pkg-config --libs openblas yaml-0.1 libcjson 2>/dev/null) -lpthread -lm
LUA_CFLAGS  := $(shell pkg-config --cflags lua5.4 libedit 2>/dev/null)
LUA_LIBS    := $(shell pkg-config --libs lua5.4 libedit 2>/dev/null)

B := build
CORE_SRC    := $(wildcard core/*.c) $(wildcard io/*.c)
# kernels written over `real` (kreal.h) compile twice (_f32, _f64); the others (alloc, threads, gemm_bf16) once
KERNEL_SRC  := $(shell grep -l '"kreal.h"' kernels/*.c)
KPLAIN_SRC  := $(filter-out $(KERNEL_SRC),$(wildcard kernels/*.c))
LUA_SRC     := $(filter-out lua/lmpi.c,$(wildcard lua/*.c))
CORE_OBJ    := $(CORE_SRC:%.c=$(B)/%.o) $(KPLAIN_SRC:%.c=$(B)/%.o) $(KERNEL_SRC:%.c=$(B)/%_f32.o) $(KERNEL_SRC:%.c=$(B)/%_f64.o)
LUA_OBJ     := $(LUA_SRC:%.c=$(B)/%.o)
CTEST_SRC   := $(filter-out tests/test_repl.c,$(wildcard tests/test_*.c))
CTEST_BIN   := $(CTEST_SRC:tests/%.c=$(B)/tests/%)
HEADERS     := $(wildcard core/*.h io/*.h kernels/*.h lua/*.h tests/*.h)
FIXTURES    ?= $(abspath tests/fixtures)

.PHONY: all run test bench asan valgrind data clean deps check-anchors
all: $(if $(filter 1,$(MPI)),hyblua-mpi,hyblua)

deps:
	@bash .ci/deps.sh

$(B)/core/%.o: core/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) -c $< -o $@
$(B)/io/%.o: io/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) -c $< -o $@
$(B)/kernels/%.o: kernels/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 $(CORE_CFLAGS) -c $< -o $@
# kernels get -O3: GCC 12's -O2 cost model leaves their element-wise loops scalar (no -ffast-math)
$(B)/kernels/%_f32.o: kernels/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 $(CORE_CFLAGS) -c $< -o $@
$(B)/kernels/%_f64.o: kernels/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 $(CORE_CFLAGS) -DHB_KERNEL_F64 -c $< -o $@
$(B)/lua/%.o: lua/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) $(LUA_CFLAGS) -DHB_LUADIR='"$(CURDIR)/lua"' -c $< -o $@

$(B)/libhbcore.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

hyblua: $(LUA_OBJ) $(B)/libhbcore.a
	$(CC) $(CFLAGS) -o $@ $(LUA_OBJ) $(B)/libhbcore.a $(LUA_LIBS) $(CORE_LIBS) -Wl,-E

# optional data-parallel executable (make MPI=1 → ./hyblua-mpi; docs/distributed.md): the binding again,
# with -DHB_MPI and lua/lmpi.c, into build-mpi/, over the same MPI-free libhbcore.a. The default ./hyblua
# never includes mpi.h nor links libmpi; pkg-config ompi-c runs only when this target is built.
MPI_B     := build-mpi
MPI_OBJ   := $(LUA_SRC:%.c=$(MPI_B)/%.o) $(MPI_B)/lua/lmpi.o
$(MPI_B)/lua/%.o: lua/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) $(LUA_CFLAGS) $(shell pkg-config --cflags ompi-c) -DHB_MPI -DHB_LUADIR='"$(CURDIR)/lua"' -c $< -o $@
hyblua-mpi: $(MPI_OBJ) $(B)/libhbcore.a
	$(CC) $(CFLAGS) -o $@ $(MPI_OBJ) $(B)/libhbcore.a $(LUA_LIBS) $(shell pkg-config --libs ompi-c) $(CORE_LIBS) -Wl,-E

$(B)/tests/%: tests/%.c $(B)/libhbcore.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) $< -o $@ $(B)/libhbcore.a $(CORE_LIBS)
$(B)/tests/test_repl: tests/test_repl.c tests/tap.h $(B)/tests/hyblua_stub
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ -lutil
# the REPL test drives the executable built around a stub module (tests/stub_hyblua.c), so that it can
# interrupt a C-side long operation on purpose; the real module is exercised by the Lua tests
$(B)/tests/hyblua_stub: lua/main.c core/interrupt.c tests/stub_hyblua.c lua/hyblua.h core/interrupt.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) lua/main.c core/interrupt.c tests/stub_hyblua.c -o $@ $(LUA_LIBS) -lm

test: hyblua $(CTEST_BIN) $(if $(wildcard tests/test_repl.c),$(B)/tests/test_repl)
	HB_FIXTURES=$(FIXTURES) HYBLUA=$(B)/tests/hyblua_stub HYBLUA_REAL=./hyblua prove -e tests/runtest $(CTEST_BIN) \
	  $(if $(wildcard tests/test_repl.c),$(B)/tests/test_repl) $(sort $(wildcard tests/test_*.lua)) \
	  $(wildcard tests/test_*.sh)

# the slow anchors, not part of `make test` (docs/reproduction.md): Zoology's 2-layer d 64 Transformer must
# solve MQAR (≥ 0.97 on 4, 8 and 16 key-value pairs at seq_len 64) with hb.train and a learning-rate sweep.
# The fast version (--tiny: learns beyond chance) is tests/test_anchor.lua.
check-anchors: hyblua
	./hyblua recipes/mqar_anchor.lua --check --out runs/mqar_anchor

# the State of the Union corpus as byte-level shards in data/sotu (BPE=4096 also trains a BPE: data/sotu/bpe4096)
data: hyblua
	BPE=$(BPE) bash recipes/data/fetch_sotu.sh

# fuzz targets: `make fuzz` (clang + libFuzzer) and their replay in `make test` (tests/fuzz/fuzz.mk)
include tests/fuzz/fuzz.mk

run: deps hyblua
	./hyblua recipes/gdn_3to1.lua

bench: hyblua $(B)/libhbcore.a
	bash tests/bench/run.sh $(BENCH_ARGS)

# the whole suite under AddressSanitizer + UBSan (any report fails the run, leaks included). It runs in
# a copy of the tree (build-asan/tree, objects kept between runs) so the normal ./hyblua is untouched.
# float-cast-overflow is named: gcc's -fsanitize=undefined leaves it out, and an out-of-range float → int
# conversion is undefined behaviour like any other.
SAN_FLAGS := -O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow -fno-omit-frame-pointer
asan:
	@mkdir -p build-asan/tree
	@find build-asan/tree -mindepth 1 -maxdepth 1 ! -name build ! -name hyblua -exec rm -rf {} +
	@git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C build-asan/tree
	@if [ -d tests/data/gpt2 ]; then cp -a tests/data/gpt2 build-asan/tree/tests/data/; fi
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) -C build-asan/tree FIXTURES=$(FIXTURES) OPT="$(SAN_FLAGS)" test

# the C tests under valgrind memcheck: objects in build-vg/ without -march=native (valgrind 3.19 has no
# AVX-512) and OpenBLAS pinned to its Haswell kernels for the same reason; any error or leak fails.
VG := valgrind --quiet --show-possibly-lost=no --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
valgrind:
	$(MAKE) B=build-vg OPT="-O1 -g" build-vg/libhbcore.a $(CTEST_SRC:tests/%.c=build-vg/tests/%)
	OPENBLAS_CORETYPE=Haswell HB_FIXTURES=$(FIXTURES) prove -e '$(VG)' $(CTEST_SRC:tests/%.c=build-vg/tests/%)

clean:
	rm -rf build build-asan build-vg build-mpi build-fuzz hyblua hyblua-mpi
