# tests/fuzz/fuzz.mk — the fuzz targets (tests/fuzz/<target>.c), included by the Makefile.
#
#   make fuzz [FUZZ_TARGETS="yaml data"] [FUZZ_TIME=60]
#     needs clang with libFuzzer (Debian: apt-get install clang). Builds core/, kernels/ and the binding
#     with clang + AddressSanitizer + UBSan into build-fuzz/obj/, links build-fuzz/fuzz_<target>, and runs
#     each target for FUZZ_TIME seconds, one after the other, from its committed seeds
#     (tests/fuzz/corpus/<target>/) plus what earlier runs found (build-fuzz/corpus/<target>/, where new
#     inputs go). A crash is saved as build-fuzz/crashes/<target>/crash-<sha1>: fix the parser, copy
#     the file to tests/fuzz/regress/<target>/ and `make test` replays it from then on.
#   make test
#     builds every target with $(CC) and tests/fuzz/replay.c instead of libFuzzer ($(B)/fuzz/replay_<t>)
#     and tests/test_fuzz_replay.lua runs each on its seeds and regression files (one TAP line per
#     target); no clang needed.

FUZZ_ALL     := safetensors config yaml tokenizer_hf tokenizer_gpt2 data
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_TIME    ?= 60
FUZZ_LUA     := config data
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# the longest input libFuzzer tries, per target (bytes)
FUZZ_MAXLEN_safetensors    := 4096
FUZZ_MAXLEN_config         := 2048
FUZZ_MAXLEN_yaml           := 4096
FUZZ_MAXLEN_tokenizer_hf   := 8192
FUZZ_MAXLEN_tokenizer_gpt2 := 8192
FUZZ_MAXLEN_data           := 4096
FB := build-fuzz
FUZZ_HDR := $(wildcard tests/fuzz/*.h)

# ---- make fuzz (clang + libFuzzer) ----------------------------------------------------------------
.PHONY: fuzz fuzz-build fuzz-objs
fuzz: fuzz-build $(FUZZ_TARGETS:%=fuzz-run-%)
fuzz-build: $(FUZZ_TARGETS:%=$(FB)/fuzz_%)

# the library objects, instrumented, through this Makefile's own rules with B=$(FB)/obj
fuzz-objs:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs clang (apt-get install clang)"; exit 1; }
	$(MAKE) --no-print-directory B=$(FB)/obj CC=$(FUZZ_CC) OPT="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  $(FB)/obj/libhbcore.a $(patsubst lua/%.c,$(FB)/obj/lua/%.o,$(filter-out lua/main.c,$(LUA_SRC)))

$(FB)/fuzz_%: tests/fuzz/%.c $(FUZZ_HDR) fuzz-objs
	$(FUZZ_CC) -O1 -g -std=c11 -D_GNU_SOURCE -Icore -Ikernels -fsanitize=fuzzer $(FUZZ_SAN) $(CORE_CFLAGS) \
	  $(if $(filter $*,$(FUZZ_LUA)),$(LUA_CFLAGS)) $< -o $@ \
	  $(if $(filter $*,$(FUZZ_LUA)),$(patsubst lua/%.c,$(FB)/obj/lua/%.o,$(filter-out lua/main.c,$(LUA_SRC)))) \
	  $(FB)/obj/libhbcore.a $(if $(filter $*,$(FUZZ_LUA)),$(LUA_LIBS)) $(CORE_LIBS)

fuzz-run-%: $(FB)/fuzz_%
	@mkdir -p $(FB)/corpus/$* $(FB)/crashes/$*
	@echo "== fuzz $*: $(FUZZ_TIME) s, -max_len=$(FUZZ_MAXLEN_$*)"
	@$(FB)/fuzz_$* -max_total_time=$(FUZZ_TIME) -max_len=$(FUZZ_MAXLEN_$*) -timeout=20 -rss_limit_mb=4096 \
	  -print_final_stats=1 $(if $(wildcard tests/fuzz/$*.dict),-dict=tests/fuzz/$*.dict) \
	  -artifact_prefix=$(FB)/crashes/$*/ $(FB)/corpus/$* tests/fuzz/corpus/$* \
	  >$(FB)/fuzz_$*.log 2>&1; rc=$$?; \
	  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^==[0-9]+==|^stat::|^SUMMARY|^artifact_prefix|^Test unit|property failed' \
	    $(FB)/fuzz_$*.log | tail -n 25; \
	  echo "   (full log: $(FB)/fuzz_$*.log)"; exit $$rc

# ---- make test (the normal compiler, replaying seeds and regression inputs) ----------------------
FUZZ_REPLAY := $(FUZZ_ALL:%=$(B)/fuzz/replay_%)
FUZZ_LUA_OBJ = $(filter-out $(B)/lua/main.o,$(LUA_OBJ))

$(FUZZ_LUA:%=$(B)/fuzz/replay_%): $(FUZZ_LUA_OBJ)
$(B)/fuzz/replay_%: tests/fuzz/%.c tests/fuzz/replay.c $(FUZZ_HDR) $(B)/libhbcore.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CORE_CFLAGS) $(if $(filter $*,$(FUZZ_LUA)),$(LUA_CFLAGS)) $< tests/fuzz/replay.c -o $@ \
	  $(if $(filter $*,$(FUZZ_LUA)),$(FUZZ_LUA_OBJ)) $(B)/libhbcore.a \
	  $(if $(filter $*,$(FUZZ_LUA)),$(LUA_LIBS)) $(CORE_LIBS)

test: $(FUZZ_REPLAY)
test: export HB_FUZZ_BIN := $(abspath $(B))/fuzz
