# dkimpress — one plain GNU Makefile (no autotools).
#
#   make            build build/dkimpress and build/libdkimpress.a
#   make test       install missing Debian packages (as root), build, run
#                   every test; ends with "N passed, N failed"
#   make demo       keys, sample messages, double-signing, verification
#   make sanitize   the SAN_TESTS suites under ASan + UBSan (libc malloc;
#                   SAN_TESTS= runs all but tests/ct, never sanitized)
#   make tsan       the TSAN_TESTS suites (unit, crash) under ThreadSanitizer
#   make fuzz       every libFuzzer target briefly (CI); make fuzz-long:
#                   a long campaign outside CI (tests/fuzz/README.md)
#   make bench      dkimpress against the crypto and I/O bounds and
#                   libopendkim, one run, one table (tools/bench)
#   make tune       sweep threads, batch, uring_depth (tools/tune)
#   make install    PREFIX=/usr/local, DESTDIR honoured: binary, library,
#                   man pages, example configuration, systemd unit
#   make ci-prebuild  build (not run) what sanitize, tsan and fuzz need;
#                   .ci/run does it in the background during make test
#   make clean

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/dkimpress
# the systemd unit (dist/dkimpress.service, with BINDIR and SYSCONFDIR
# written in); the configuration it names is SYSCONFDIR/dkimpress/
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
BUILD   ?= build
CC      ?= cc
# jemalloc normally; libc for sanitizer builds (see src/base/mem.h).
MALLOC  ?= jemalloc

PKGS := liburing libcrypto libssl libxxhash libnats libmicrohttpd libsystemd libpsl
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
# this list (base first): base, crypto, dkim, conf, transport, relay,
# engine, cmd (relay: the SMTP/LMTP client behind out/new, dkimpress relay).
LIB_SRC := $(wildcard src/base/*.c src/crypto/*.c src/dkim/*.c src/conf/*.c src/transport/*.c \
	src/relay/*.c src/engine/*.c)
CLI_SRC := $(wildcard src/cmd/*.c)
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:src/%.c=$(BUILD)/obj/%.o)

# Test hooks (-DDKP_TEST_HOOKS): DKP_TEST_CORRUPT_SIG (dkim/sign.c),
# DKP_RSA8_FAULT_LANE (crypto/rsa8_sign.c) and DKP_FAULT_URING
# (transport/uring.c) make the program corrupt signatures or fail I/O on
# purpose, for tests/selfverify, tests/fault and test_rsa8;
# DKIMPRESS_RELAY_TRACE and DKIMPRESS_RELAY_CRASH_REPUBLISHED
# (relay/relay_js.c) trace and crash the JetStream relay for
# tests/relay/jetstream.sh. They exist
# only in the test build: those files compiled again with the switch
# ($(BUILD)/obj-hooks), $(BUILD)/libdkimpress-test.a and
# $(BUILD)/dkimpress-test, made by unit-tests, never by all or install.
# build/dkimpress ignores those variables (tests/hooks shows it).
HOOK_SRC := src/dkim/sign.c src/crypto/rsa8_sign.c src/transport/uring.c src/relay/relay_js.c
HOOK_OBJ := $(HOOK_SRC:src/%.c=$(BUILD)/obj-hooks/%.o)
TEST_LIB_OBJ := $(filter-out $(HOOK_SRC:src/%.c=$(BUILD)/obj/%.o),$(LIB_OBJ)) $(HOOK_OBJ)

UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
TEST_TOOLS := $(BUILD)/tests/odkim_verify

.PHONY: all deps test check sanitize tsan demo bench tune install uninstall clean unit-tests \
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

$(BUILD)/obj-hooks/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -DDKP_TEST_HOOKS $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/libdkimpress-test.a: $(TEST_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/dkimpress-test: $(CLI_OBJ) $(BUILD)/libdkimpress-test.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# test_rsa8 sets the fault lane itself: the test library
$(BUILD)/tests/test_rsa8: tests/unit/test_rsa8.c tests/unit/unit.h $(BUILD)/libdkimpress-test.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -DDKP_TEST_HOOKS -Itests/unit $(ALL_CFLAGS) -o $@ $< \
		$(BUILD)/libdkimpress-test.a $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/tests/test_%: tests/unit/test_%.c tests/unit/unit.h $(BUILD)/libdkimpress.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) -o $@ $< \
		$(BUILD)/libdkimpress.a $(LDLIBS) $(shell pkg-config --libs cmocka)

# the command line's tables live in the program, not the library
$(BUILD)/tests/test_cli: tests/unit/test_cli.c tests/unit/unit.h $(BUILD)/obj/cmd/cli.o \
		$(BUILD)/obj/cmd/cli_cmds.o $(BUILD)/libdkimpress.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) -o $@ $< $(BUILD)/obj/cmd/cli.o \
		$(BUILD)/obj/cmd/cli_cmds.o $(BUILD)/libdkimpress.a $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/tests/odkim_verify: tests/interop/odkim_verify.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags opendkim) -o $@ $< \
		$(shell pkg-config --libs opendkim)

# tests/fault: the LD_PRELOAD fault injector (tests/fault/inject.c), built
# with the unit tests, never sanitized (it is preloaded into any build).
$(BUILD)/tests/fault_inject.so: tests/fault/inject.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -fPIC -shared -o $@ $< -ldl -lpthread

unit-tests: $(BUILD)/tests/fault_inject.so

# tests/ct: the constant-time check of the 8-lane RSA kernel under
# valgrind (tests/ct/run.sh). valgrind 3.19 cannot run AVX-512, so these
# build the same kernel source emulated (-DDKP_RSA8_EMULATE), plus a
# canary with one deliberate secret branch; never sanitized (valgrind
# runs them); DWARF 4 because valgrind 3.19 cannot read clang 14's DWARF 5. tools/rsa8: the long run (make test-rsa-long) and the
# speed comparison with OpenSSL ($(BUILD)/tests/rsa8_speed).
RSA8_DEPS := src/crypto/rsa8.c src/crypto/rsa8.h src/crypto/rsa8_vec.h src/crypto/rsa8_int.h \
	src/crypto/keymem.c src/crypto/keymem.h
$(BUILD)/tests/ct_rsa8: tests/ct/ct_rsa8.c $(RSA8_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=c11 $(WARN) $(CFLAGS) -gdwarf-4 -DDKP_RSA8_EMULATE -o $@ \
		tests/ct/ct_rsa8.c src/crypto/rsa8.c src/crypto/keymem.c src/base/log.c \
		$(shell pkg-config --libs libcrypto) -lpthread
$(BUILD)/tests/ct_rsa8_canary: tests/ct/ct_rsa8.c $(RSA8_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=c11 $(WARN) $(CFLAGS) -gdwarf-4 -DDKP_RSA8_EMULATE -DDKP_RSA8_CT_CANARY \
		-o $@ tests/ct/ct_rsa8.c src/crypto/rsa8.c src/crypto/keymem.c src/base/log.c \
		$(shell pkg-config --libs libcrypto) -lpthread
$(BUILD)/tests/rsa_long: tools/rsa8/rsa_long.c tools/rsa8/rsa8_common.h $(BUILD)/libdkimpress.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libdkimpress.a $(LDLIBS)
$(BUILD)/tests/rsa8_speed: tools/rsa8/rsa8_speed.c tools/rsa8/rsa8_common.h $(BUILD)/libdkimpress.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libdkimpress.a $(LDLIBS)

unit-tests: $(BUILD)/tests/ct_rsa8 $(BUILD)/tests/ct_rsa8_canary $(BUILD)/tests/rsa8_speed

# RSA_LONG_PAIRS (default 10,000,000) signatures on both cores, each
# checked; see tools/rsa8/rsa_long.c.
.PHONY: test-rsa-long
test-rsa-long: all $(BUILD)/tests/rsa_long
	@$(BUILD)/tests/rsa_long

unit-tests: $(UNIT_TESTS) $(TEST_TOOLS) $(BUILD)/dkimpress-test

# 'make test' = set-up + build + every test; 'make check' skips set-up.
# TEST_JOBS: with 2, the suites tests/run declares run_par (they mostly
# wait on fsync, sleeps and servers) run two at a time, the others alone
# (docs/operations.md, "CI time"). make test defaults to 2 (the README's
# command, which .ci/run runs); make check, and so make sanitize and make
# tsan, to 1.
test: deps
	@$(MAKE) --no-print-directory check TEST_JOBS=$(or $(TEST_JOBS),2)

check: all unit-tests
	@BUILD=$(BUILD) TEST_JOBS=$(or $(TEST_JOBS),1) MAKEFLAGS= tests/run

# ASan + UBSan with libc malloc (jemalloc and ASan both want malloc).
SAN_VARS = BUILD=build/sanitize MALLOC=libc OPT=-O1 \
	SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
# SAN_TESTS: the suites run under the sanitizers (tests/run names; empty:
# every suite). The default keeps CI inside its 40 minutes now that `make
# test` itself takes about 25 (docs/operations.md, "CI time"): the unit
# tests, interop's edge cases, and the suites that drive the engine (its
# crash loop and the policy suite), the queue protocol, enqueue --id, the
# relay and the signing policy through their error paths.
SAN_TESTS ?= unit interop policy crash order enqueue relay align check
sanitize: deps
	@TESTS="$(SAN_TESTS)" $(MAKE) --no-print-directory $(SAN_VARS) check

# ThreadSanitizer, libc malloc, -O1 -g, in build/tsan: the unit tests and
# the crash loop, which runs the engine's workers and commit thread
# (TSAN_TESTS; `make tsan TSAN_TESTS="unit engine crash"` adds the engine
# suite, left out of CI for its time). A race makes the program exit 66; every report also goes
# to build/tsan/reports/, and tests/run fails the test program during
# which one appeared, even from a child whose output the suite discards.
# The TSan runtimes of gcc 12 and clang 14 need a fixed memory layout:
# with vm.mmap_rnd_bits above 28 (newer kernels) they die at start with
# "FATAL: ThreadSanitizer: unexpected memory mapping". So the run goes
# under `setarch -R` (no ASLR, for this process tree only) where allowed.
TSAN_TESTS ?= unit crash
TSAN_LOGS  := $(CURDIR)/build/tsan/reports
TSAN_NOASLR = $(shell setarch $$(uname -m) -R true >/dev/null 2>&1 && echo setarch $$(uname -m) -R)

tsan: deps
	@rm -rf $(TSAN_LOGS) && mkdir -p $(TSAN_LOGS)
	@echo "tsan: $(TSAN_TESTS); $(if $(TSAN_NOASLR),ASLR off (setarch -R),ASLR on: setarch -R is not allowed here)"
	@$(TSAN_NOASLR) env TESTS="$(TSAN_TESTS)" SAN_LOG_DIR=$(TSAN_LOGS) \
		TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 log_path=$(TSAN_LOGS)/tsan $(TSAN_OPTIONS)" \
		$(MAKE) --no-print-directory $(TSAN_VARS) check

# The programs of make sanitize, make tsan and make fuzz, built and not
# run: .ci/run builds them under nice -n 19 while make test runs (its
# suites leave the CPUs idle much of the time), so those steps only test.
TSAN_VARS = BUILD=build/tsan MALLOC=libc OPT=-O1 \
	SANFLAGS="-fsanitize=thread -fno-omit-frame-pointer"
.PHONY: sanitize-build tsan-build ci-prebuild
sanitize-build:
	@$(MAKE) --no-print-directory $(SAN_VARS) all unit-tests
tsan-build:
	@$(MAKE) --no-print-directory $(TSAN_VARS) all unit-tests
ci-prebuild: sanitize-build tsan-build fuzz-build

$(BUILD)/bench/odkim-sign: bench/odkim_sign.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) $(shell pkg-config --cflags opendkim) \
		-o $@ $< $(shell pkg-config --libs opendkim) -lcrypto -lpthread

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/odkim-sign
	@BUILD=$(BUILD) tools/bench

# JetStream (a local three-node cluster) against the queue directory, one
# and three engines, CPU per message (tools/bench-jetstream,
# docs/scale-out.md). BENCH_JS_ARGS="--n 4000 --keys rsa".
.PHONY: bench-jetstream
bench-jetstream: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tools/bench-jetstream $(BENCH_JS_ARGS)

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
	install -d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)
	install -m 0644 docs/dkimpress.conf.5 $(DESTDIR)$(MANDIR)/man5/dkimpress.conf.5
	install -m 0644 docs/examples/dkimpress.conf $(DESTDIR)$(DOCDIR)/dkimpress.conf.example
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		dist/dkimpress.service >$(DESTDIR)$(UNITDIR)/dkimpress.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/dkimpress.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/dkimpress $(DESTDIR)$(LIBDIR)/libdkimpress.a \
		$(DESTDIR)$(INCDIR)/dkimpress/dkimpress.h \
		$(DESTDIR)$(MANDIR)/man1/dkimpress.1 \
		$(DESTDIR)$(MANDIR)/man5/dkimpress.conf.5 \
		$(DESTDIR)$(DOCDIR)/dkimpress.conf.example \
		$(DESTDIR)$(UNITDIR)/dkimpress.service
	-rmdir $(DESTDIR)$(INCDIR)/dkimpress $(DESTDIR)$(DOCDIR)

# ---- make fuzz: libFuzzer targets (tests/fuzz/fuzz_*.c) -------------------
# clang -fsanitize=fuzzer,address,undefined with libc malloc; the library is
# rebuilt for it in build/fuzz (as 'sanitize' does in build/sanitize). Each
# target runs FUZZ_SECONDS on a copy of its seeds (tests/fuzz/corpus/NAME,
# copied to build/fuzz/work/NAME); crash inputs go to build/fuzz/crashes/NAME.
# One closing line: "fuzz: N targets, N executions, N crashes"; exit 1 on a
# crash. FUZZ_NAMES="config route" runs some targets only; FUZZ_JOBS at once.
# See tests/fuzz/README.md.
FUZZ_BUILD   := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 2
FUZZ_CC      ?= clang
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

.PHONY: fuzz fuzz-build fuzz-targets fuzz-long

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) \
		tests/fuzz/run.sh $(FUZZ_NAMES)

# make fuzz-long: a long campaign outside CI: every target at once for
# FUZZ_LONG_SECONDS (default 4 h) under nice -n 19, on a corpus kept and
# grown across campaigns in build/fuzz/long/work (seeds added each time);
# each target's line adds its wall and CPU seconds and corpus size; an
# input may take 120 s of wall time, not 10 (a starved process is slow,
# not hung). The campaigns run so far are recorded in tests/fuzz/README.md.
FUZZ_LONG_SECONDS ?= 14400
FUZZ_LONG_JOBS    ?= $(words $(FUZZ_NAMES))
fuzz-long: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_OUT=$(FUZZ_BUILD)/long FUZZ_KEEP=1 FUZZ_TIMEOUT=120 \
		FUZZ_SECONDS=$(FUZZ_LONG_SECONDS) FUZZ_JOBS=$(FUZZ_LONG_JOBS) \
		nice -n 19 tests/fuzz/run.sh $(FUZZ_NAMES)

fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { echo "error: make fuzz needs $(FUZZ_CC) (apt-get install -y clang)" >&2; exit 1; }
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) MALLOC=libc CC=$(FUZZ_CC) \
		OPT=-O1 SANFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
		check-pkgs fuzz-targets

fuzz-targets: $(FUZZ_NAMES:%=$(BUILD)/bin/fuzz_%)

$(BUILD)/bin/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(BUILD)/libdkimpress.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/fuzz $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< \
		$(BUILD)/libdkimpress.a $(LDLIBS)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(HOOK_OBJ:.o=.d)
