# loopforge -- build, test, run, bench, install.
#
#   make            build/loopforge, build/libloopforge.a, build/libloopforge.so,
#                   build/lfbot (the embedding example, contrib/embed/)
#   make test       every test (C, busted, CLI integration) under ASan+UBSan
#   make run        loopforge serve on 127.0.0.1:8080 (embedded store, shipped policies)
#   make walk       the guided walk of one record through the lifecycle on the CLI
#   make bench      the benchmarks (optimized build), and instructions counted
#                   by callgrind (contrib/callgrind.sh)
#   make install    PREFIX=/usr/local DESTDIR=
#   make PGO= LTO=  the optimized build in one plain pass (see LTO, PGO below)
#
# `deps` installs missing Debian packages (as root) before anything builds.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS    := lua5.4 libcjson libevent openssl hiredis libzstd libgvc
# Deferred (=, not :=): on a fresh machine `make test` first runs `deps`,
# which installs these packages, and only then compiles.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Lua's stricter set where it costs little.
WARN    := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
           -Wundef -Wredundant-decls
# The version lives in one place: src/loopforge.h.
VERSION := $(shell sed -n 's/^\#define LF_VERSION_STRING "\(.*\)"/\1/p' src/loopforge.h)
CFLAGS  ?= -O2 -g
# The optimized build is optimized across modules at link time too: a
# transition runs through core, store, rules and engine, small functions
# each (+3 % in process, `make bench`). Its objects are fat (machine code
# beside the compiler's own form), so libloopforge.a still links into a
# program built without LTO. `make LTO=` builds without.
LTO     ?= -flto=auto -ffat-lto-objects
# And guided by a profile: the program is first built instrumented
# (build/pgo/loopforge) and run on `loopforge bench`'s workload --
# memory: with the shipped policies, a journal, a replay of it (a few
# seconds) -- then its objects are compiled again with what the run
# counted: which way each branch goes, what is worth inlining (+9 % in
# process on top of LTO, `make bench`). Code the run never reached is
# compiled as without a profile. Any change of the sources runs the
# profile again; `make PGO=` builds without (quicker while editing).
PGO     ?= yes
# With gcc on x86-64, a memcpy or memset whose size gcc cannot tell is
# small (a sealed line copied into the arena, a request's state cleared)
# calls glibc's, which picks its moves for the CPU it runs on, where gcc
# expanded it as `rep movs`/`rep stos`, slow to start on AMD's cores
# (+1.5 % in process; `make bench`). `make STRINGOPS=` leaves it to gcc.
GCC_X86 := $(shell $(CC) -v 2>&1 | grep -q '^gcc version' && \
                   $(CC) -dumpmachine | grep -q '^x86_64' && echo yes)
STRINGOPS ?= $(if $(GCC_X86),-mmemset-strategy=libcall:-1:noalign \
                             -mmemcpy-strategy=libcall:-1:noalign)
OPT     = $(LTO) $(STRINGOPS)
PGO_USE := $(if $(PGO),-fprofile-use -fprofile-partial-training -Wno-missing-profile)
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP \
              -DLF_DATADIR='"$(PREFIX)/share/loopforge"'
# float-cast-overflow: gcc's `undefined` leaves it out (clang's, the fuzz
# build's, has it): a double out of an integer's range, converted.
SAN     := -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined,float-cast-overflow
LIBS    = $(PKG_LIBS) -lpthread -lm

LIB_SRC := $(sort $(wildcard src/core/*.c src/store/*.c src/rules/*.c src/engine/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c src/http/*.c))
LUAMOD_SRC := $(sort $(wildcard src/lua/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

B := build
A := build/asan
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/obj/%.o)
ALIB_OBJ := $(LIB_SRC:%.c=$(A)/obj/%.o)
ACLI_OBJ := $(CLI_SRC:%.c=$(A)/obj/%.o)
LUAMOD_OBJ := $(LUAMOD_SRC:%.c=$(B)/obj/%.o)
LUAMOD  := $(if $(LUAMOD_SRC),$(B)/lua/loopforge/core.so)
TEST_BIN := $(TEST_SRC:tests/%.c=$(A)/tests/%)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(A)/fuzz/%)
# make fuzz: the same targets with clang's libFuzzer, on a library built
# for it (build/fuzz), each for FUZZ_SECONDS from the seed corpus.
FZ      := build/fuzz
FZ_SAN  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FZ_OBJ  := $(LIB_SRC:%.c=$(FZ)/obj/%.o)
FZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=$(FZ)/%)
FUZZ_SECONDS ?= 60

.PHONY: all deps test run walk bench install clean fuzz format FORCE
all: $(B)/loopforge $(B)/libloopforge.a $(B)/libloopforge.so $(LUAMOD) $(B)/lfbot

deps:
	@sh contrib/install-deps.sh

# Headers are tracked per object (-MMD -MP, the .d files below). The
# library's objects hide every symbol but the LF_API ones (loopforge.h):
# libloopforge.so exports the API and nothing else.
$(LIB_OBJ) $(ALIB_OBJ): VIS := -fvisibility=hidden

# The optimized objects; with PGO (above) compiled twice in place: first
# instrumented (PGO_PASS=gen, by the profile's own make), then with the
# profile the instrumented program's run left beside each object (.gcda).
# In place, because a profile names a file's static functions by the
# object's path. A run that fails leaves no profile, and the build goes
# on without one.
ifeq ($(PGO_PASS),gen)
$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(VIS) -fprofile-generate -fprofile-update=prefer-atomic -c -o $@ $<
else
$(B)/obj/%.o: %.c $(if $(PGO),$(B)/profile.stamp)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(VIS) $(OPT) $(PGO_USE) -c -o $@ $<
endif

$(B)/pgo/loopforge: $(CLI_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fprofile-generate -o $@ $^ $(LIBS)

$(B)/profile.stamp: $(LIB_SRC) $(CLI_SRC) $(wildcard src/*.h src/*/*.h policies/*/*.lua)
	@$(MAKE) -B --no-print-directory PGO_PASS=gen $(B)/pgo/loopforge
	@find $(B)/obj -name '*.gcda' -delete; rm -rf $(B)/pgo/run; mkdir -p $(B)/pgo/run
	@echo "pgo: running the instrumented build on bench's workload"
	@( $(B)/pgo/loopforge --policies policies bench --records 2000 --runs 1 --store memory: && \
	   $(B)/pgo/loopforge --policies policies bench --records 100 --runs 1 \
	     --store file:$(B)/pgo/run/j && \
	   $(B)/pgo/loopforge --policies policies --store file:$(B)/pgo/run/j list --limit 50 ) \
	    >$(B)/pgo/run/log 2>&1 || { echo "pgo: the run failed (see $(B)/pgo/run/log): no profile" >&2; \
	    find $(B)/obj -name '*.gcda' -delete; }
	@touch $@

$(A)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(VIS) $(SAN) -O1 -c -o $@ $<

-include $(shell find build -name '*.d' 2>/dev/null)

# The data directory ($(PREFIX)/share/loopforge) is compiled in: the
# objects that use it rebuild when PREFIX changes, so `make install
# PREFIX=...` after a plain `make` installs a binary that finds its data.
DATADIR_OBJ := $(B)/obj/src/cli/main.o $(B)/obj/src/rules/rules.o \
               $(A)/obj/src/cli/main.o $(A)/obj/src/rules/rules.o \
               $(B)/obj/src/http/console.o $(A)/obj/src/http/console.o
$(DATADIR_OBJ): $(B)/prefix.stamp
$(B)/prefix.stamp: FORCE
	@mkdir -p $(B); echo '$(PREFIX)' | cmp -s - $@ 2>/dev/null || echo '$(PREFIX)' >$@
FORCE:

$(B)/libloopforge.a: $(LIB_OBJ)
	@mkdir -p $(B); rm -f $@; ar rcs $@ $^

$(B)/libloopforge.so: $(LIB_OBJ)
	$(CC) $(CFLAGS) $(OPT) -shared -Wl,-soname,libloopforge.so.0 -o $@ $^ $(LIBS)

$(B)/loopforge: $(CLI_OBJ) $(B)/libloopforge.a
	$(CC) $(CFLAGS) $(OPT) -o $@ $(CLI_OBJ) $(B)/libloopforge.a $(LIBS)

# The embedding example (contrib/embed/), against the in-tree library and
# the public header only; tests/cli/embed.sh builds it again against an
# installed prefix through pkg-config.
$(B)/lfbot: contrib/embed/lfbot.c src/loopforge.h $(B)/libloopforge.a
	$(CC) -std=c11 $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Isrc -o $@ $< $(B)/libloopforge.a $(LIBS)

# loopforge.core for Lua hosts and busted (optimized build: a sanitized
# module cannot load into a plain lua5.4).
$(B)/lua/loopforge/core.so: $(LUAMOD_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(LUAMOD_OBJ) $(LIB_OBJ) $(filter-out -llua5.4,$(LIBS))

$(A)/libloopforge.a: $(ALIB_OBJ)
	@mkdir -p $(A); rm -f $@; ar rcs $@ $^

$(A)/loopforge: $(ACLI_OBJ) $(A)/libloopforge.a
	$(CC) $(SAN) -o $@ $(ACLI_OBJ) $(A)/libloopforge.a $(LIBS)

$(A)/tests/%: tests/%.c $(A)/libloopforge.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -O1 -o $@ $< $(A)/libloopforge.a $(LIBS) -lcmocka

# The fuzz targets as plain programs (tests/fuzz/fuzz.h's main): `make
# test` runs each once over its seed corpus (tests/cli/fuzz_corpus.sh).
$(A)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(A)/libloopforge.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -O1 -o $@ $< $(A)/libloopforge.a $(LIBS)

test: deps $(A)/loopforge $(TEST_BIN) $(FUZZ_BIN) $(LUAMOD)
	@LOOPFORGE_BIN=$(CURDIR)/$(A)/loopforge sh tests/run.sh $(TEST_BIN)

$(FZ)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(ALL_CFLAGS) $(FZ_SAN) -fsanitize=fuzzer-no-link -O1 -c -o $@ $<

$(FZ)/libloopforge.a: $(FZ_OBJ)
	@mkdir -p $(FZ); rm -f $@; ar rcs $@ $^

# LUA_SRC=DIR, a Lua 5.4 source tree's src/ (`apt-get source lua5.4`):
# the targets link that Lua, built here with the same sanitizers, instead
# of Debian's, which ASan does not see into -- a bad access inside Lua is
# then caught where it happens, not where our code next meets its damage.
FZ_LUA  := $(if $(LUA_SRC),$(FZ)/liblua.a)
$(FZ)/liblua.a: $(filter-out %/lua.c %/luac.c %/onelua.c,$(wildcard $(LUA_SRC)/*.c))
	@mkdir -p $(FZ)/lua; rm -f $@
	cd $(FZ)/lua && for f in $(abspath $^); do \
	    clang -O1 -g $(FZ_SAN) -fsanitize=fuzzer-no-link -DLUA_USE_LINUX -c $$f || exit 1; \
	done
	ar rcs $@ $(FZ)/lua/*.o

$(FZ)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FZ)/libloopforge.a $(FZ_LUA)
	clang $(ALL_CFLAGS) $(FZ_SAN) -fsanitize=fuzzer -DLF_LIBFUZZER -O1 -o $@ $< \
	    $(FZ)/libloopforge.a $(FZ_LUA) $(if $(FZ_LUA),$(filter-out -llua5.4,$(LIBS)),$(LIBS))

# Bounded exploration: each target FUZZ_SECONDS from its seed corpus; new
# inputs go to build/fuzz/corpus/<target>, crashes to build/fuzz/.
fuzz: deps $(A)/loopforge $(FZ_BIN)
	@sh contrib/install-deps.sh fuzz
	@rm -rf $(FZ)/seeds; sh tests/fuzz/corpus.sh $(FZ)/seeds $(A)/loopforge
	@set -e; for t in $(FZ_BIN); do n=$$(basename $$t); c=$${n#fuzz_}; \
	    mkdir -p $(FZ)/corpus/$$c; echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	    $$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FZ)/$$n- \
	        $(FZ)/corpus/$$c $(FZ)/seeds/$$c $$(ls -d tests/fuzz/regressions/$$c 2>/dev/null) \
	        2>$(FZ)/$$n.log || \
	        { tail -40 $(FZ)/$$n.log; exit 1; }; tail -1 $(FZ)/$$n.log; done

# Rewrites the C sources in the style .clang-format describes.
format:
	@sh contrib/install-deps.sh format
	clang-format-16 -i $$(git ls-files '*.c' '*.h')

# The main job: `loopforge serve` on 127.0.0.1:8080 with the embedded
# store and the shipped policies (prints a curl example; Ctrl-C stops it).
run: deps all
	@sh contrib/serve.sh $(B)/loopforge

# A guided walk of one record through the lifecycle, on the CLI.
walk: deps all
	@sh contrib/walkthrough.sh $(B)/loopforge
	@sh contrib/lifecycles.sh $(B)/loopforge

bench: deps all
	@sh contrib/install-deps.sh bench
	@$(B)/loopforge bench
	@if command -v python3 >/dev/null 2>&1; then \
	    python3 contrib/bench-reference.py --loopforge $(B)/loopforge --policies policies \
	        $${LOOPFORGE_REFERENCE:+--path "$$LOOPFORGE_REFERENCE"}; \
	else echo "reference: no python3 here: no comparison with Python LoopForge in this run"; fi
	@$(B)/loopforge bench --scale 10000,100000
	@sh contrib/bench-http.sh $(B)/loopforge
	@if command -v valgrind >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; then \
	    sh contrib/callgrind.sh $(B)/loopforge; \
	else echo "callgrind: no valgrind or redis-server here: no instruction counts in this run"; fi

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/loopforge \
	    $(DESTDIR)$(PREFIX)/lib/lua/5.4/loopforge $(DESTDIR)$(PREFIX)/share/lua/5.4/loopforge
	install -m 755 $(B)/loopforge $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(B)/libloopforge.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libloopforge.so $(DESTDIR)$(PREFIX)/lib/libloopforge.so.0
	ln -sf libloopforge.so.0 $(DESTDIR)$(PREFIX)/lib/libloopforge.so
	install -m 644 src/loopforge.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' contrib/loopforge.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/loopforge.pc
	install -m 755 $(B)/lua/loopforge/core.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/loopforge/
	install -m 644 lua/loopforge/*.lua $(DESTDIR)$(PREFIX)/share/lua/5.4/loopforge/
	rm -rf $(DESTDIR)$(PREFIX)/share/loopforge/policies $(DESTDIR)$(PREFIX)/share/loopforge/lua \
	    $(DESTDIR)$(PREFIX)/share/loopforge/ui
	cp -R lua policies ui $(DESTDIR)$(PREFIX)/share/loopforge/

clean:
	rm -rf build
