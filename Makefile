# xdprouter: `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BUILD := build
CLANG ?= clang
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 \
	-I$(BUILD) -Ibpf -Ibpf/include -I/usr/include/x86_64-linux-gnu
APT_PACKAGES := clang llvm libbpf-dev libbpf1 bpftool iproute2 ethtool nftables iputils-ping linux-perf
BPF_SOURCES := $(wildcard bpf/*.bpf.c)
BPF_OBJECTS := $(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SOURCES))
BPF_HEADERS := $(wildcard bpf/*.h bpf/include/*.h) $(BUILD)/abi.h

.PHONY: all deps venv bpf demo test bench lint clean install

all: bpf

# Debian packages: installed only when a tool or header is missing.
$(BUILD)/.deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null \
		|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	fi
	@mkdir -p $(BUILD) && touch $@

$(VENV)/.installed: pyproject.toml $(BUILD)/.deps
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

venv: $(VENV)/.installed
deps: $(BUILD)/.deps venv

$(BUILD)/abi.h: src/xdprouter/abi.py | $(BUILD)/.deps
	$(PYTHON) src/xdprouter/abi.py > $@.tmp && mv $@.tmp $@

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BPF_HEADERS) | $(BUILD)/.deps
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

bpf: $(BPF_OBJECTS)

demo: venv bpf
	$(VENV)/bin/xdprouter-demo

test: venv bpf
	$(VENV)/bin/python -m pytest -q tests

bench: venv bpf
	$(VENV)/bin/xdprouter bench --firewall --plot bench-results/bench.png

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean:
	rm -rf $(BUILD)

# The daemon on a host (docs/daemon.md): the package into its own virtualenv
# under $(PREFIX)/lib/xdprouter, the BPF objects beside it, the command in
# $(PREFIX)/bin, the unit, and an example config unless one exists.
PREFIX ?= /usr/local
install: bpf
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)/lib/xdprouter/venv
	$(DESTDIR)$(PREFIX)/lib/xdprouter/venv/bin/pip install -q .
	install -m 644 $(BPF_OBJECTS) $(DESTDIR)$(PREFIX)/lib/xdprouter/
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/xdprouter $(DESTDIR)/etc/systemd/system
	ln -sf $(PREFIX)/lib/xdprouter/venv/bin/xdprouter $(DESTDIR)$(PREFIX)/bin/xdprouter
	install -m 644 packaging/xdprouter.service $(DESTDIR)/etc/systemd/system/xdprouter.service
	test -e $(DESTDIR)/etc/xdprouter/xdprouter.toml || install -m 644 packaging/xdprouter.toml $(DESTDIR)/etc/xdprouter/
	install -D -m 644 docs/daemon.md $(DESTDIR)$(PREFIX)/share/doc/xdprouter/daemon.md
