# saga orchestrator — build, test, demo.
#   make            build sagad, sagactl, libsaga and the example services
#   make fuzz       run the fuzz targets (FUZZ_SECONDS each, default 300)
#   make check      install what is missing, build with ASan+UBSan, run the unit
#                   tests and the integration tests against a real PostgreSQL
#                   and a real Kafka broker (started and stopped by scripts/)
#   make demo       the order saga end to end, shown with sagactl (DEMO_KEEP=1: stay up)
#   make install PREFIX=/usr/local

PREFIX  ?= /usr/local
BUILD   ?= build
SAN     ?= 0
CC      ?= cc

PKGS     := rdkafka jansson libpq uuid libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# libmicrohttpd serves sagad's /metrics, /healthz and /readyz; only what
# links the orchestrator's core needs it, never libsaga.
MHD_CFLAGS := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS   := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wno-format-nonliteral -Wvla -Wundef
CFLAGS  ?= -O2 -g
BASE_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) $(CFLAGS) -MMD -MP
LDLIBS  := $(PKG_LIBS) -lm -lpthread
CORE_LDLIBS := $(MHD_LIBS) $(LDLIBS)

# The floors (docs/ARCHITECTURE.md). Each folder sees the folders below it
# and only the libraries it may use; scripts/forbid/ puts headers first on
# the path that fail the build when a floor includes a library it must not
# (librdkafka and libpq sit on the default path, so leaving a flag out is
# not enough). The SDK's private headers (sdk/src) are the SDK's alone:
# the orchestrator sees the public headers and sdk/internal/saga_shared.h.
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
PQ_CFLAGS      := $(shell pkg-config --cflags libpq 2>/dev/null)
SDK_INC   := -Isdk/include -Isdk/internal
NO_KAFKA  := -Iscripts/forbid/rdkafka
NO_PQ     := -Iscripts/forbid/libpq
NO_HTTP   := -Iscripts/forbid/mhd
CORE_INC  := $(SDK_INC) -Iorchestrator/core
OBS_INC   := $(CORE_INC) -Iorchestrator/obs
STORE_INC := $(OBS_INC) -Iorchestrator/store
ENGINE_INC := $(STORE_INC) -Iorchestrator/engine
API_INC   := $(STORE_INC) -Iorchestrator/api
FLOOR_CFLAGS = $(SDK_INC) -Isdk/src $(PKG_CFLAGS)
$(BUILD)/orchestrator/core/%.o: FLOOR_CFLAGS = $(NO_KAFKA) $(NO_PQ) $(NO_HTTP) $(CORE_INC) $(JANSSON_CFLAGS)
$(BUILD)/orchestrator/obs/%.o: FLOOR_CFLAGS = $(NO_KAFKA) $(NO_PQ) $(OBS_INC) $(JANSSON_CFLAGS) $(MHD_CFLAGS)
$(BUILD)/orchestrator/store/%.o: FLOOR_CFLAGS = $(NO_KAFKA) $(NO_HTTP) $(STORE_INC) $(JANSSON_CFLAGS) $(PQ_CFLAGS)
$(BUILD)/orchestrator/engine/%.o: FLOOR_CFLAGS = $(ENGINE_INC) $(PKG_CFLAGS) $(MHD_CFLAGS)
$(BUILD)/orchestrator/api/%.o: FLOOR_CFLAGS = $(NO_KAFKA) $(NO_HTTP) $(API_INC) $(JANSSON_CFLAGS) $(PQ_CFLAGS)
$(BUILD)/orchestrator/sagad/%.o: FLOOR_CFLAGS = $(ENGINE_INC) -Iorchestrator/api $(PKG_CFLAGS) $(MHD_CFLAGS)
$(BUILD)/orchestrator/sagactl/%.o: FLOOR_CFLAGS = $(NO_HTTP) $(STORE_INC) -Iorchestrator/sagactl $(PKG_CFLAGS)
$(BUILD)/tests/%.o: FLOOR_CFLAGS = $(ENGINE_INC) -Iorchestrator/api -Isdk/src -Iorchestrator/sagactl $(PKG_CFLAGS) $(MHD_CFLAGS)
$(BUILD)/examples/%.o: FLOOR_CFLAGS = $(SDK_INC) $(PKG_CFLAGS)
ALL_CFLAGS = $(BASE_CFLAGS) $(FLOOR_CFLAGS)

ifeq ($(SAN),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=address,undefined
endif

SDK_SRC  := $(wildcard sdk/src/*.c)
SAGACTL_SRC := $(wildcard orchestrator/sagactl/*.c)
CORE_SRC := $(wildcard orchestrator/core/*.c orchestrator/obs/*.c orchestrator/store/*.c \
                       orchestrator/engine/*.c orchestrator/api/*.c)
SDK_OBJ  := $(SDK_SRC:%.c=$(BUILD)/%.o)
SDK_PIC  := $(SDK_SRC:%.c=$(BUILD)/pic/%.o)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)

LIBSAGA_A  := $(BUILD)/lib/libsaga.a
# The soname counts ABI generations: any incompatible change bumps it
# (docs/SDK.md, "ABI and versions").
SONAME     := libsaga.so.2
LIBSAGA_SO := $(BUILD)/lib/$(SONAME)
LIBCORE_A  := $(BUILD)/lib/libsagacore.a

BINS := $(BUILD)/bin/sagad $(BUILD)/bin/sagactl \
        $(BUILD)/bin/order-service $(BUILD)/bin/payment-service $(BUILD)/bin/inventory-service \
        $(BUILD)/bin/travel-service $(BUILD)/bin/shipping-service \
        $(BUILD)/bin/bench-service $(BUILD)/bin/saga-bench $(BUILD)/bin/bare-pipeline \
        $(BUILD)/bin/api-load

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
INTEG_SRC  := $(wildcard tests/integration/test_*.c)
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(BUILD)/tests/%)

.PHONY: all check unit integration demo install clean format format-check deps tests bench fuzz

FUZZ_SECONDS ?= 300

all: $(BINS) $(LIBSAGA_A) $(LIBSAGA_SO)

tests: $(UNIT_BINS) $(INTEG_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

# The API's OpenAPI document, built into sagad as a C array
# (saga_api_openapi.c serves it); only that object sees $(BUILD)/gen.
$(BUILD)/gen/saga_openapi_json.h: orchestrator/api/openapi.json scripts/embed
	@mkdir -p $(dir $@)
	scripts/embed saga_openapi_json $< $@
$(BUILD)/orchestrator/api/saga_api_openapi.o: $(BUILD)/gen/saga_openapi_json.h
$(BUILD)/orchestrator/api/saga_api_openapi.o: FLOOR_CFLAGS += -I$(BUILD)/gen

# The operator console's files (docs/CONSOLE.md), built into sagad the
# same way (saga_api_console.c serves them): no build step, no npm.
CONSOLE_FILES := $(sort $(wildcard orchestrator/console/*.html orchestrator/console/*.js \
                                   orchestrator/console/*.css orchestrator/console/*.svg))
$(BUILD)/gen/saga_console_files.h: $(CONSOLE_FILES) scripts/embed scripts/embed-files
	@mkdir -p $(dir $@)
	scripts/embed-files $@ $(CONSOLE_FILES)
$(BUILD)/orchestrator/api/saga_api_console.o: $(BUILD)/gen/saga_console_files.h
$(BUILD)/orchestrator/api/saga_api_console.o: FLOOR_CFLAGS += -I$(BUILD)/gen

$(LIBSAGA_A): $(SDK_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The shared library exports only the public API (saga_* but not saga__*).
$(LIBSAGA_SO): $(SDK_PIC) sdk/libsaga.map
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=sdk/libsaga.map \
	  $(LDFLAGS) -o $@ $(SDK_PIC) $(LDLIBS)
	ln -sf $(SONAME) $(BUILD)/lib/libsaga.so

$(LIBCORE_A): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/sagad: $(patsubst %.c,$(BUILD)/%.o,$(wildcard orchestrator/sagad/*.c)) $(LIBCORE_A) $(LIBSAGA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LDLIBS)

$(BUILD)/bin/sagactl: $(SAGACTL_SRC:%.c=$(BUILD)/%.o) $(LIBCORE_A) $(LIBSAGA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LDLIBS)

$(BUILD)/bin/saga-bench: $(BUILD)/tests/bench/saga_bench.o $(LIBCORE_A) $(LIBSAGA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LDLIBS)

$(BUILD)/bin/bare-pipeline: $(BUILD)/tests/bench/bare_pipeline.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lrdkafka -lpq -lpthread

# The HTTP API's load driver: plain sockets and epoll, no library.
$(BUILD)/bin/api-load: $(BUILD)/tests/bench/api_load.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/bin/%-service: $(BUILD)/examples/%_service.o $(BUILD)/examples/example_common.o $(LIBSAGA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIBCORE_A) $(LIBSAGA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LDLIBS) -lcmocka

$(BUILD)/tests/%: $(BUILD)/tests/integration/%.o $(BUILD)/tests/integration/harness.o \
                  $(BUILD)/tests/integration/order_workload.o \
                  $(LIBCORE_A) $(LIBSAGA_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LDLIBS) -lcmocka

# ThreadSanitizer build of the tests where threads meet inside libsaga (the
# counters read while the poller writes them; a stop from another thread),
# with libsaga compiled into each (not the ASan objects). tests/tsan/ holds
# what TSan needs to see librdkafka's C11 threads and locks
# (c11_threads.c) and the suppressions for librdkafka's own insides.
TSAN_TESTS := test_participant_stats test_sdk_api
TSAN_BINS  := $(TSAN_TESTS:%=build/tsan/tests/%)
TSAN_SHIM  := build/tsan/lib/libsagatsanc11.so
.PHONY: tsan
tsan: $(TSAN_BINS)
# A library of its own, so that the suppressions can name it: it serves
# only librdkafka (libsaga uses pthreads).
$(TSAN_SHIM): tests/tsan/c11_threads.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_DEFAULT_SOURCE $(WARN) -g -O1 -fPIC -shared -o $@ $< -lpthread
build/tsan/tests/%: tests/unit/%.c $(TSAN_SHIM) $(SDK_SRC) $(wildcard sdk/src/*.h sdk/include/saga/*.h sdk/internal/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) -g -O1 -fsanitize=thread \
	  $(SDK_INC) -Isdk/src $(PKG_CFLAGS) -o $@ $< $(SDK_SRC) \
	  -Lbuild/tsan/lib -Wl,-rpath,$(abspath build/tsan/lib) -Wl,--no-as-needed -lsagatsanc11 \
	  -Wl,--as-needed $(LDLIBS) -lcmocka

deps:
	@scripts/install-deps

# Unit tests need no server; integration tests get their own PostgreSQL and
# Kafka from scripts/with-services (or the ones SAGA_PG_URL and
# SAGA_KAFKA_BROKERS name), which also stops them on failure.
check: deps
	$(MAKE) --no-print-directory BUILD=build/san SAN=1 all tests
	$(MAKE) --no-print-directory tsan
	$(MAKE) --no-print-directory format-check
	scripts/fuzz 10
	scripts/run-tests build/san

# Throughput and latency figures (scripts/bench; BENCH_* settings there),
# then sagactl against a million finished sagas unless BENCH_HISTORY=0.
# PostgreSQL runs durable here (SAGA_PG_DURABLE=1: fsync, full_page_writes,
# synchronous_commit on) with pg_stat_statements and checkpoint and
# autovacuum logging (SAGA_PG_BENCH=1); the tests keep scripts/services'
# fast settings.
BENCH_HISTORY ?= 1
bench: deps
	$(MAKE) --no-print-directory all
	SAGA_PG_DURABLE=1 SAGA_PG_BENCH=1 scripts/with-services scripts/bench $(BUILD)
	@if [ "$(BENCH_HISTORY)" != 0 ]; then SAGA_PG_DURABLE=1 scripts/with-services scripts/bench-history $(BUILD); fi

# sagactl list/stuck/show/history/stats and purge with a million finished
# sagas (scripts/bench-history; HISTORY_* settings there).
.PHONY: bench-history
bench-history: deps
	$(MAKE) --no-print-directory all
	SAGA_PG_DURABLE=1 scripts/with-services scripts/bench-history $(BUILD)

# The libFuzzer targets (definitions, protocol, and apply: the engine and the
# participant with a real PostgreSQL and Kafka) for FUZZ_SECONDS each.
fuzz: deps
	scripts/with-services scripts/fuzz $(FUZZ_SECONDS)

unit:
	$(MAKE) --no-print-directory BUILD=build/san SAN=1 tests
	$(MAKE) --no-print-directory tsan
	scripts/run-tests build/san unit

demo: deps
	$(MAKE) --no-print-directory all
	scripts/with-services scripts/demo $(BUILD)

# The console's screenshots (docs/CONSOLE.md, docs/console/*.png), taken
# by its browser test against a real sagad, so that they stay true.
.PHONY: screenshots
screenshots: deps
	$(MAKE) --no-print-directory all
	SAGA_CONSOLE_SHOTS=$(CURDIR)/docs/console SAGA_BUILD_DIR=$(BUILD) \
	    scripts/with-services tests/integration/test_console.sh
	rm -f docs/console/failure.png

install: all
	install -d $(DESTDIR)$(PREFIX)/include/saga $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 sdk/include/saga/*.h $(DESTDIR)$(PREFIX)/include/saga/
	install -m 644 $(LIBSAGA_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBSAGA_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libsaga.so
	install -m 755 $(BUILD)/bin/sagad $(BUILD)/bin/sagactl $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|g' sdk/libsaga.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libsaga.pc

FORMAT_SRC = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	@clang-format --dry-run -Werror $(FORMAT_SRC) && echo "format: ok"

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
