# hyblua — plain GNU make. Targets: all (./hyblua), run, test, bench, asan, data, clean, deps.
# core/ and kernels/ build into build/libhbcore.a without Lua; lua/ adds the binding and the executable.

PKGS      := lua5.4 openblas yaml-0.1 libcjson libedit
CC        ?= gcc
OPT       ?= -O3 -march=native
CFLAGS    += $(OPT) -g -std=c11 -Ikernels -Icore -Wall -Wextra -D_GNU_SOURCE -fno-fast-math
CORE_CFLAGS := $(shell pkg-config --cflags openblas yaml-0.1 libcjson 2>/dev/null)
CORE_LIBS   := $(shell pkg-config --libs openblas yaml-0.1 libcjson 2>/dev/null) -lpthread -lm
LUA_CFLAGS  := $(shell pkg-config --cflags lua5.4 libedit 2>/dev/null)
LUA_LIBS    := $(shell pkg-config --libs lua5.4 libedit 2>/dev/null)

B := build
CORE_SRC    := $(wildcard core/*.c)
KERNEL_SRC  := $(wildcard kernels/*.c)
LUA_SRC     := $(wildcard lua/*.c)
CORE_OBJ    := $(CORE_SRC:%.c=$(B)/%.o) $(KERNEL_SRC:%.c=$(B)/%_f32.o) $(KERNEL_SRC:%.c=$(B)/%_f64.o)
LUA_OBJ     := $(LUA_SRC:%.c=$(B)/%.o)
CTEST_SRC   := $(filter-out tests/test_repl.c,$(wildcard tests/test_*.c))
CTEST_BIN   := $(CTEST_SRC:tests/%.c=$(B)/tests/%)
HEADERS     := $(wildcard core/*.h kernels/*.h lua/*.h tests/*.h)

.PHONY: all run test bench asan data clean deps
all: hyblua

deps:
	@bash .ci/deps.sh

$(B)/core/%.o: core/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) -c $< -o $@
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

$(B)/tests/%: tests/%.c $(B)/libhbcore.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) $< -o $@ $(B)/libhbcore.a $(CORE_LIBS)
$(B)/tests/test_repl: tests/test_repl.c $(B)/tests/hyblua_stub
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ -lutil
# the REPL test drives the executable built around a stub module (tests/stub_hyblua.c), so that it can
# interrupt a C-side long operation on purpose; the real module is exercised by the Lua tests
$(B)/tests/hyblua_stub: lua/main.c core/interrupt.c tests/stub_hyblua.c lua/hyblua.h core/interrupt.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) lua/main.c core/interrupt.c tests/stub_hyblua.c -o $@ $(LUA_LIBS) -lm

test: hyblua $(CTEST_BIN) $(if $(wildcard tests/test_repl.c),$(B)/tests/test_repl)
	HB_FIXTURES=$(abspath ../shared/fixtures) HYBLUA=$(B)/tests/hyblua_stub prove -e tests/runtest $(CTEST_BIN) \
	  $(if $(wildcard tests/test_repl.c),$(B)/tests/test_repl) $(sort $(wildcard tests/test_*.lua))

run: deps hyblua
	./hyblua recipes/gdn_3to1.lua

bench: hyblua $(B)/libhbcore.a
	bash tests/bench/run.sh $(BENCH_ARGS)

# the whole suite under AddressSanitizer + UBSan (objects in build-asan/; ./hyblua is relinked
# with the sanitizers for the run and removed afterwards so the next `make` rebuilds the normal one)
asan:
	rm -f hyblua
	$(MAKE) B=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" test
	rm -f hyblua

clean:
	rm -rf build build-asan hyblua
