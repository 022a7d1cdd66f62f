# xdprouter: `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BUILD := build
CLANG ?= clang
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 \
	-I$(BUILD) -Ibpf -Ibpf/include -I/usr/include/x86_64-linux-gnu
# Pinned versions: deps/apt.txt (Debian) and deps/constraints.txt (PyPI, the
# build backend of the editable install included); `make pins` moves them.
PIP_ENV := PIP_CONSTRAINT=$(CURDIR)/deps/constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1
BPF_SOURCES := $(wildcard bpf/*.bpf.c)
BPF_OBJECTS := $(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SOURCES))
BPF_HEADERS := $(wildcard bpf/*.h bpf/include/*.h) $(BUILD)/abi.h

.PHONY: all deps venv bpf demo test bench lint clean install pins

all: bpf

# Debian packages: installed only when missing, at their pinned versions.
$(BUILD)/.deps: deps/apt.txt deps/install-apt
	@deps/install-apt deps/apt.txt
	@mkdir -p $(BUILD) && touch $@

$(VENV)/.installed: pyproject.toml deps/constraints.txt $(BUILD)/.deps
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP_ENV) $(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

# Move the pins to what this machine has now (run after `make test` passed
# with newer packages installed on purpose, e.g. `.venv/bin/pip install -U X`).
pins: venv
	{ sed -n '1,3p' deps/constraints.txt; $(VENV)/bin/pip freeze --all --exclude-editable \
		| grep -v -e '^pip==' -e '^xdprouter' | sort -f; } > deps/constraints.txt.tmp
	mv deps/constraints.txt.tmp deps/constraints.txt
	{ sed -n '1,2p' deps/apt.txt; grep -v '^#' deps/apt.txt | cut -d= -f1 \
		| xargs dpkg-query -W -f '$${Package}=$${Version}\n'; } > deps/apt.txt.tmp
	mv deps/apt.txt.tmp deps/apt.txt

venv: $(VENV)/.installed
deps: $(BUILD)/.deps venv

$(BUILD)/abi.h: $(wildcard src/xdprouter/dataplane/abi*.py) src/xdprouter/dataplane/cheader.py | $(VENV)/.installed
	$(VENV)/bin/python -m xdprouter.dataplane.cheader > $@.tmp && mv $@.tmp $@

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BPF_HEADERS) | $(BUILD)/.deps
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

bpf: $(BPF_OBJECTS)

demo: venv bpf
	$(VENV)/bin/xdprouter-demo

test: venv bpf
	$(VENV)/bin/python -m pytest -q tests

bench: venv bpf
	$(VENV)/bin/xdprouter bench --firewall --xsk --plot bench-results/bench.png

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
	$(PIP_ENV) $(DESTDIR)$(PREFIX)/lib/xdprouter/venv/bin/pip install -q .
	install -m 644 $(BPF_OBJECTS) $(DESTDIR)$(PREFIX)/lib/xdprouter/
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/xdprouter $(DESTDIR)/etc/systemd/system
	ln -sf $(PREFIX)/lib/xdprouter/venv/bin/xdprouter $(DESTDIR)$(PREFIX)/bin/xdprouter
	install -m 644 packaging/xdprouter.service $(DESTDIR)/etc/systemd/system/xdprouter.service
	test -e $(DESTDIR)/etc/xdprouter/xdprouter.toml || install -m 644 packaging/xdprouter.toml $(DESTDIR)/etc/xdprouter/
	install -D -m 644 docs/daemon.md $(DESTDIR)$(PREFIX)/share/doc/xdprouter/daemon.md
