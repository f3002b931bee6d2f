# mastershrink: plan and apply the safe shrink of a binary-deployed Kubernetes control plane.
#
#   make demo    bring up the lab, shrink it 3 to 1 with plan and apply, show the result
#   make test    every test, the lab ones included (installs what it needs first)
#   make bench   benchmarks: one table of medians and spreads (BENCH_RUNS runs), bench/results.json
#   make faults  the fault suite: crashes, failures injected mid-apply, bad inputs
#   make build   bin/mastershrink
#   make man     the man pages, one per command, into bin/man (man -l bin/man/mastershrink-plan.1)
#   make verify  gofmt and go vet
#
# Builds are cached outside the repo: Go's in ~/.cache/go-build, the lab's binaries and
# rootfs in $(MASTERSHRINK_CACHE).

SHELL := /bin/bash
GO ?= go
export MASTERSHRINK_CACHE ?= $(HOME)/.cache/mastershrink
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# A static, stripped binary: no cgo, so it starts on the older jump hosts binary clusters are
# run from, whatever their glibc; -trimpath keeps the build machine's paths out of it.
LDFLAGS := -s -w \
           -X github.com/mastershrink/mastershrink/internal/version.Version=$(VERSION) \
           -X github.com/mastershrink/mastershrink/internal/version.Commit=$(COMMIT)

K8S_VERSION ?= v1.37.0
ETCD_VERSION ?= v3.5.21
KWOK_VERSION ?= v0.8.0
CFSSL_VERSION ?= v1.6.5

# Debian packages the lab and the tests need on the machine running them.
DEB_PACKAGES := systemd-container debootstrap nginx libnginx-mod-stream iproute2 iptables \
	ipvsadm openssl openssh-client openssh-server bridge-utils kmod procps util-linux dbus patch

.PHONY: all build man test test-unit test-lab bench faults demo verify lint deps lab-binaries clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -ldflags '$(LDFLAGS)' -o bin/mastershrink ./cmd/mastershrink

# man writes a man page per command, from the same help text as --help, with the binary
# make build makes (so the pages name its version).
MAN_DIR ?= bin/man
man: build
	bin/mastershrink man $(MAN_DIR)

# deps installs the Debian packages that are missing (apt-get update only when needed).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# lab-binaries builds etcd, Kubernetes, kwok and cfssl from the Go module proxy once per
# version (the first build takes about 10 minutes; later runs find them in the cache).
lab-binaries:
	@testenv/scripts/build-binaries.sh cfssl $(CFSSL_VERSION) >/dev/null
	@testenv/scripts/build-binaries.sh etcd $(ETCD_VERSION) >/dev/null
	@testenv/scripts/build-binaries.sh kwok $(KWOK_VERSION) >/dev/null
	@testenv/scripts/build-binaries.sh kubernetes $(K8S_VERSION) >/dev/null

test: deps lab-binaries test-unit test-lab

# Unit tests and the fast tiers (real etcd and kube-apiserver processes on loopback).
test-unit:
	$(GO) test -count=1 -timeout 30m ./...

# Lab tests bring up systemd machines; one package at a time, since each owns a lab.
test-lab:
	MASTERSHRINK_LAB=1 $(GO) test -count=1 -p 1 -timeout 60m -run 'Lab' ./...

# bench runs the 3-to-1 shrink in fresh labs, with mastershrink apply and with seed 003's
# commands by hand; the same apply in a lab with BENCH_SCALE_NODES more node proxies (scale
# nodes: sshd and nginx each), against an xargs -P ssh loop over the same proxies; then the
# component benchmarks (certs inspect against one openssl storeutl process over a bundle and
# against cfssl certinfo, a 1 GiB snapshot against etcdctl snapshot save, drain against
# kubectl drain), each BENCH_RUNS times; it prints one table and writes it to
# bench/results.json (the README's Figures come from it).
BENCH_RUNS ?= 3
BENCH_SCALE_NODES ?= 200
bench: deps lab-binaries build
	BENCH_RUNS=$(BENCH_RUNS) MASTERSHRINK_BENCH_SCALE_NODES=$(BENCH_SCALE_NODES) $(GO) run ./bench/cmd/benchtable -bin bin/mastershrink -out bench/results.json

# faults is the fault suite: mastershrink killed at every step boundary and mid-step
# (cmd/mastershrink), a survivor apiserver that will not start, nginx -t failing on one node,
# an SSH connection cut mid-step, a leaving master powered off (runner), and the bad-input
# corpus (cmd/mastershrink/testdata/bad). Each lab test brings up its own lab, one at a time.
FAULTS_RUN ?= ^(TestFault.*|TestLabApplyCrashResume|TestBadInputCorpus)$$
faults: deps lab-binaries
	MASTERSHRINK_LAB=1 $(GO) test -count=1 -p 1 -timeout 90m -run '$(FAULTS_RUN)' ./runner/ ./cmd/mastershrink/

demo: deps lab-binaries build
	$(GO) run ./testenv/cmd/demo

verify lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
