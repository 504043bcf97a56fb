# loopforge -- build, test, run, bench, install.
#
#   make            build/loopforge, build/libloopforge.a, build/libloopforge.so,
#                   build/lfbot (the embedding example, contrib/embed/)
#   make test       every test (C, busted, CLI integration) under ASan+UBSan
#   make run        loopforge serve on 127.0.0.1:8080 (embedded store, shipped policies)
#   make walk       the guided walk of one record through the lifecycle on the CLI
#   make bench      the benchmarks (optimized build)
#   make install    PREFIX=/usr/local DESTDIR=
#
# `deps` installs missing Debian packages (as root) before anything builds.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS    := lua5.4 libcjson libevent openssl hiredis
# Deferred (=, not :=): on a fresh machine `make test` first runs `deps`,
# which installs these packages, and only then compiles.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(PKG_CFLAGS) \
              -DLF_DATADIR='"$(PREFIX)/share/loopforge"'
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LIBS    = $(PKG_LIBS) -lm

LIB_SRC := $(sort $(wildcard src/core/*.c src/store/*.c src/rules/*.c src/engine/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c src/http/*.c))
LUAMOD_SRC := $(sort $(wildcard src/lua/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))

B := build
A := build/asan
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/obj/%.o)
ALIB_OBJ := $(LIB_SRC:%.c=$(A)/obj/%.o)
ACLI_OBJ := $(CLI_SRC:%.c=$(A)/obj/%.o)
LUAMOD_OBJ := $(LUAMOD_SRC:%.c=$(B)/obj/%.o)
LUAMOD  := $(if $(LUAMOD_SRC),$(B)/lua/loopforge/core.so)
TEST_BIN := $(TEST_SRC:tests/%.c=$(A)/tests/%)

.PHONY: all deps test run walk bench install clean
all: $(B)/loopforge $(B)/libloopforge.a $(B)/libloopforge.so $(LUAMOD) $(B)/lfbot

deps:
	@sh contrib/install-deps.sh

$(B)/obj/%.o: %.c $(wildcard src/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(A)/obj/%.o: %.c $(wildcard src/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -O1 -c -o $@ $<

$(B)/libloopforge.a: $(LIB_OBJ)
	@mkdir -p $(B); rm -f $@; ar rcs $@ $^

$(B)/libloopforge.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libloopforge.so.0 -o $@ $^ $(LIBS)

$(B)/loopforge: $(CLI_OBJ) $(B)/libloopforge.a
	$(CC) -o $@ $(CLI_OBJ) $(B)/libloopforge.a $(LIBS)

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

test: deps $(A)/loopforge $(TEST_BIN) $(LUAMOD)
	@LOOPFORGE_BIN=$(CURDIR)/$(A)/loopforge sh tests/run.sh $(TEST_BIN)

# The main job: `loopforge serve` on 127.0.0.1:8080 with the embedded
# store and the shipped policies (prints a curl example; Ctrl-C stops it).
run: deps all
	@sh contrib/serve.sh $(B)/loopforge

# A guided walk of one record through the lifecycle, on the CLI.
walk: deps all
	@sh contrib/walkthrough.sh $(B)/loopforge

bench: deps all
	@sh contrib/install-deps.sh bench
	@$(B)/loopforge bench
	@sh contrib/bench-http.sh $(B)/loopforge

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/loopforge \
	    $(DESTDIR)$(PREFIX)/lib/lua/5.4/loopforge $(DESTDIR)$(PREFIX)/share/lua/5.4/loopforge
	install -m 755 $(B)/loopforge $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(B)/libloopforge.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libloopforge.so $(DESTDIR)$(PREFIX)/lib/libloopforge.so.0
	ln -sf libloopforge.so.0 $(DESTDIR)$(PREFIX)/lib/libloopforge.so
	install -m 644 src/loopforge.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' contrib/loopforge.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/loopforge.pc
	install -m 755 $(B)/lua/loopforge/core.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/loopforge/
	install -m 644 lua/loopforge/*.lua $(DESTDIR)$(PREFIX)/share/lua/5.4/loopforge/
	rm -rf $(DESTDIR)$(PREFIX)/share/loopforge/policies $(DESTDIR)$(PREFIX)/share/loopforge/lua
	cp -R lua policies $(DESTDIR)$(PREFIX)/share/loopforge/

clean:
	rm -rf build
