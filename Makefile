# dkimpress — one plain GNU Makefile (no autotools).
#
#   make            build build/dkimpress and build/libdkimpress.a
#   make test       install missing Debian packages (as root), build, run
#                   every test; ends with "N passed, N failed"
#   make demo       keys, sample messages, double-signing, verification
#   make sanitize   the same tests under ASan + UBSan (libc malloc)
#   make bench      dkimpress against the crypto and I/O bounds and
#                   libopendkim, one run, one table (tools/bench)
#   make tune       sweep threads, batch, uring_depth (tools/tune)
#   make install    PREFIX=/usr/local, DESTDIR honoured
#   make clean

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
BUILD   ?= build
CC      ?= cc
# jemalloc normally; libc for sanitizer builds (see src/base/mem.h).
MALLOC  ?= jemalloc

PKGS := liburing libcrypto libxxhash
ifeq ($(MALLOC),jemalloc)
PKGS += jemalloc
endif

# Fail early, with the fix, when a library is missing (not for clean/deps).
ifeq ($(filter clean deps distclean,$(MAKECMDGOALS)),)
ifneq ($(shell pkg-config --exists $(PKGS) 2>/dev/null && echo ok),ok)
PKG_MISSING := 1
endif
endif

OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE
DEPFLAGS  = -MMD -MP
ALL_CFLAGS = -std=c11 $(WARN) $(CFLAGS) $(SANFLAGS) \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lresolv -lpthread

# One folder per layer; a layer includes only from the layers above it in
# this list (base first): base, dkim, conf, transport, engine, cmd.
LIB_SRC := $(wildcard src/base/*.c src/dkim/*.c src/conf/*.c src/transport/*.c \
	src/engine/*.c)
CLI_SRC := $(wildcard src/cmd/*.c)
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:src/%.c=$(BUILD)/obj/%.o)

UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
TEST_TOOLS := $(BUILD)/tests/odkim_verify

.PHONY: all deps test check sanitize demo bench tune install uninstall clean unit-tests \
	check-pkgs

all: check-pkgs $(BUILD)/dkimpress $(BUILD)/libdkimpress.a

check-pkgs:
ifeq ($(PKG_MISSING),1)
	@echo "error: missing libraries for: $(PKGS)" >&2
	@echo "       run 'tools/deps' as root (or 'make test', which does)" >&2
	@exit 1
endif

deps:
	@tools/deps

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/libdkimpress.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/dkimpress: $(CLI_OBJ) $(BUILD)/libdkimpress.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c tests/unit/unit.h $(BUILD)/libdkimpress.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) -o $@ $< \
		$(BUILD)/libdkimpress.a $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/tests/odkim_verify: tests/interop/odkim_verify.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags opendkim) -o $@ $< \
		$(shell pkg-config --libs opendkim)

unit-tests: $(UNIT_TESTS) $(TEST_TOOLS)

# 'make test' = set-up + build + every test; 'make check' skips set-up.
test: deps
	@$(MAKE) --no-print-directory check

check: all unit-tests
	@BUILD=$(BUILD) tests/run

# ASan + UBSan with libc malloc (jemalloc and ASan both want malloc).
sanitize: deps
	@$(MAKE) --no-print-directory BUILD=build/sanitize MALLOC=libc OPT=-O1 \
		SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		check

$(BUILD)/bench/odkim-sign: bench/odkim_sign.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) $(shell pkg-config --cflags opendkim) \
		-o $@ $< $(shell pkg-config --libs opendkim) -lcrypto -lpthread

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/odkim-sign
	@BUILD=$(BUILD) tools/bench

tune: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tools/tune

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tools/demo

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(INCDIR)/dkimpress $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(BUILD)/dkimpress $(DESTDIR)$(BINDIR)/dkimpress
	install -m 0644 $(BUILD)/libdkimpress.a $(DESTDIR)$(LIBDIR)/libdkimpress.a
	install -m 0644 include/dkimpress/dkimpress.h $(DESTDIR)$(INCDIR)/dkimpress/dkimpress.h
	install -m 0644 docs/dkimpress.1 $(DESTDIR)$(MANDIR)/man1/dkimpress.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/dkimpress $(DESTDIR)$(LIBDIR)/libdkimpress.a \
		$(DESTDIR)$(INCDIR)/dkimpress/dkimpress.h \
		$(DESTDIR)$(MANDIR)/man1/dkimpress.1
	-rmdir $(DESTDIR)$(INCDIR)/dkimpress

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
