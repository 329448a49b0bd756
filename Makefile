# ibstack: build and install like a system library.
#   make                       cargo build --release
#   make install [PREFIX=/usr/local] [DESTDIR=] [LIBDIR=lib] [INCLUDEDIR=include] [BINDIR=bin]
#   make uninstall             removes what install put there (same variables)
#   make print-version         the version (Cargo.toml's, the only place it is written)
# e.g. on Debian: make install PREFIX=/usr LIBDIR=lib/x86_64-linux-gnu DESTDIR=/tmp/root
# LIBDIR, INCLUDEDIR, BINDIR and DOCDIR are relative to PREFIX. Installs
#   $LIBDIR/libibstack.so.X.Y.Z, libibstack.so.X -> .X.Y.Z (the soname), libibstack.so -> .X,
#   $LIBDIR/libibstack.a, $LIBDIR/pkgconfig/ibstack.pc (prefix and libdir filled in),
#   $INCLUDEDIR/ibstack.h, $DOCDIR/README.md (the operator's part of README.md) and
#   $DOCDIR/examples/systemd/*.conf; and, when cargo built them, $LIBDIR/ibstack/libibstack_preload.so
#   (a private directory: it is only ever named by LD_PRELOAD, never linked, so it needs no
#   soname and stays out of ldconfig's way) and $BINDIR/ibstack-doctor.

CARGO      ?= cargo
PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= lib
INCLUDEDIR ?= include
BINDIR     ?= bin
DOCDIR     ?= share/doc/ibstack
INSTALL    ?= install
TARGET     := $(or $(CARGO_TARGET_DIR),target)/release

VERSION := $(shell sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR   := $(word 1,$(subst ., ,$(VERSION)))
SONAME  := libibstack.so.$(MAJOR)
REALNAME := libibstack.so.$(VERSION)
# optional artifacts of other parts of the build, installed only when present
PRELOAD := libibstack_preload.so
TOOLS   := ibstack-doctor
# the sections of README.md an operator needs (installed as the doc's README.md)
DOC_SECTIONS := Install and package|Linking|Configuration keys|Logging

L := $(DESTDIR)$(PREFIX)/$(LIBDIR)
I := $(DESTDIR)$(PREFIX)/$(INCLUDEDIR)
B := $(DESTDIR)$(PREFIX)/$(BINDIR)
D := $(DESTDIR)$(PREFIX)/$(DOCDIR)

.PHONY: all build install uninstall print-version
.DELETE_ON_ERROR:

all: build

build:
	$(CARGO) build --release

print-version:
	@echo $(VERSION)

install: build
	@test -n "$(VERSION)" || { echo "no version in Cargo.toml"; exit 1; }
	@so=$$(readelf -d $(TARGET)/libibstack.so | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p'); \
	  test "$$so" = "$(SONAME)" || { echo "install: $(TARGET)/libibstack.so has soname '$$so', expected $(SONAME)"; exit 1; }
	$(INSTALL) -d $(L) $(L)/pkgconfig $(I) $(D)/examples/systemd
	$(INSTALL) -m 0644 $(TARGET)/libibstack.so $(L)/$(REALNAME)
	ln -sf $(REALNAME) $(L)/$(SONAME)
	ln -sf $(SONAME) $(L)/libibstack.so
	$(INSTALL) -m 0644 $(TARGET)/libibstack.a $(L)/libibstack.a
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@PREFIX@|$(PREFIX)|' \
	    -e 's|@LIBDIR@|$${prefix}/$(LIBDIR)|' -e 's|@INCLUDEDIR@|$${prefix}/$(INCLUDEDIR)|' \
	    pkgconfig/ibstack.pc.in > $(L)/pkgconfig/ibstack.pc
	chmod 0644 $(L)/pkgconfig/ibstack.pc
	$(INSTALL) -m 0644 include/ibstack.h $(I)/ibstack.h
	awk -v want='$(DOC_SECTIONS)' ' \
	    BEGIN { n = split(want, w, "|"); for (i = 1; i <= n; i++) need[w[i]] = 1; keep = 1 } \
	    /^## / { t = substr($$0, 4); keep = (t in need); if (keep) seen[t] = 1 } \
	    keep { print } \
	    END { for (t in need) if (!(t in seen)) { print "install: README.md has no section \"" t "\"" > "/dev/stderr"; bad = 1 } exit bad }' \
	    README.md > $(D)/README.md
	chmod 0644 $(D)/README.md
	$(INSTALL) -m 0644 dist/systemd/*.conf $(D)/examples/systemd/
	@for f in $(PRELOAD); do \
	  if [ -f $(TARGET)/$$f ]; then echo "$(INSTALL) -D -m 0644 $(TARGET)/$$f $(L)/ibstack/$$f"; $(INSTALL) -D -m 0644 $(TARGET)/$$f $(L)/ibstack/$$f || exit 1; \
	  else echo "install: skip $$f (not built)"; fi; done
	@for f in $(TOOLS); do \
	  if [ -f $(TARGET)/$$f ]; then echo "$(INSTALL) -D -m 0755 $(TARGET)/$$f $(B)/$$f"; $(INSTALL) -D -m 0755 $(TARGET)/$$f $(B)/$$f || exit 1; \
	  else echo "install: skip $$f (not built)"; fi; done

uninstall:
	rm -f $(L)/$(REALNAME) $(L)/$(SONAME) $(L)/libibstack.so $(L)/libibstack.a $(L)/pkgconfig/ibstack.pc \
	      $(I)/ibstack.h $(addprefix $(L)/ibstack/,$(PRELOAD)) $(addprefix $(B)/,$(TOOLS))
	-rmdir $(L)/ibstack 2>/dev/null
	rm -rf $(D)
