# diskhist — build, test, install, benchmark and demonstrate.
#
#   make build     release binary: target/release/diskhist
#   make test      the whole suite, as CI runs it (installs missing Debian
#                  packages first when run as root)
#   make demo      the main job on the bundled fixture
#   make bench     store, history, sealing, space, NBD and mount benchmarks (whichever exist)
#   make soak      crash tests with 500 SIGKILLs, concurrency tests x5
#   make fuzz      every cargo-fuzz target for FUZZ_SECONDS each (600)
#   make install   PREFIX=/usr/local DESTDIR= (binary and man page)
#   make clean

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
BINDIR = $(DESTDIR)$(PREFIX)/bin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1
DISKHIST = target/release/diskhist

# Debian packages the integration tests and the demo run, and why.
TEST_PACKAGES = sleuthkit fuse3 libnbd-bin nbdkit xmount e2fsprogs qemu-utils util-linux fdisk g++ ntfs-3g dosfstools mtools golang-go golang-golang-x-mod-dev attr
DEMO_PACKAGES = sleuthkit fuse3 util-linux
BENCH_PACKAGES = fuse3 xmount qemu-utils util-linux bc python3 e2fsprogs fio
WHY_sleuthkit   = fls, icat, fsstat, mmls read the images
WHY_fuse3       = fusermount3 and the FUSE mount helpers
WHY_libnbd-bin  = nbdinfo, nbdcopy talk to diskhist serve
WHY_nbdkit      = a second NBD implementation to compare against
WHY_xmount      = the FUSE image server the mount is compared with
WHY_e2fsprogs   = mkfs.ext4, debugfs build filesystems to record
WHY_qemu-utils  = qemu-img, qemu-io, qemu-nbd, qemu-storage-daemon write through NBD and blklogwrites
WHY_util-linux  = losetup, mount, umount
WHY_fdisk       = sfdisk partitions an image for mmls
WHY_g++         = cargo fuzz builds libFuzzer, which is C++ (make fuzz-short)
WHY_ntfs-3g     = mkntfs and ntfs-3g build NTFS images and show what the NTFS reader must show
WHY_dosfstools  = mkfs.vfat builds FAT12/16/32 images for the FAT reader
WHY_mtools      = mcopy, mmd, mdel, mattrib write FAT images without root or a kernel driver
WHY_golang-go   = builds tests/go/sealcheck.go, the independent checker of checkpoints and proofs
WHY_golang-golang-x-mod-dev = Go's sumdb/note and sumdb/tlog, which that checker uses (built offline)
WHY_attr        = setfattr forges an NTFS creation time through ntfs-3g (tests/timeline.rs)
WHY_bc          = arithmetic in benches/nbd_write.sh
WHY_python3     = random-read latency in benches/mount_read.sh, reading fio's JSON in benches/nbd_fio.sh
WHY_fio         = small synced writes through NBD (its nbd engine) in benches/nbd_fio.sh

# $(call need-packages,PACKAGES): install the missing ones with apt-get when
# root, saying which and why; otherwise say what to install. Not fatal when
# not root: the tests that need a tool then fail and name it.
define need-packages
	@missing=; \
	if command -v dpkg-query >/dev/null 2>&1; then \
	    for p in $(1); do \
	        dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' \
	            || missing="$$missing $$p"; \
	    done; \
	fi; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make $@: installing missing Debian packages:"; \
	    $(foreach p,$(1),case " $$missing " in (*" $(p) "*) echo "  $(p): $(WHY_$(p))";; esac;) \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	    echo "make $@: missing Debian packages:$$missing; as root: apt-get install$$missing" >&2; \
	fi
endef

.PHONY: all build test deps-test deps-demo deps-bench install bench demo soak fuzz fuzz-short clean

all: build

build:
	$(CARGO) build --release

deps-test:
	$(call need-packages,$(TEST_PACKAGES))
	@if [ "$$(id -u)" = 0 ]; then modprobe fuse 2>/dev/null; modprobe loop 2>/dev/null; true; fi

deps-demo:
	$(call need-packages,$(DEMO_PACKAGES))

deps-bench:
	$(call need-packages,$(BENCH_PACKAGES))

# Release mode: the FUSE and NBD tests move real data. --workspace: the
# test support crate (tests/common) has unit tests of its own.
test: deps-test
	$(CARGO) build --release
	$(CARGO) test --release --workspace
	$(MAKE) fuzz-short
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@echo "== the library alone: no FUSE, no NBD, no command line"
	$(CARGO) build --no-default-features
	$(CARGO) clippy --no-default-features -- -D warnings

install: build
	install -d $(BINDIR) $(MAN1DIR)
	install -m 0755 $(DISKHIST) $(BINDIR)/diskhist
	install -m 0644 man/diskhist.1 $(MAN1DIR)/diskhist.1

# Whichever benchmarks exist, each printing its own figures: the store's
# index (benches/store_index.rs), listings of a 10M-record history
# (benches/listing.rs), history against the naive scan of every record
# (benches/history.rs: a 1 GiB ext4, 100,000 records), the Merkle tree and
# sealing (benches/seal.rs: throughput with and without sealing, seal and
# proofs on a 10M-record store, the tree's share of the log), metadata
# bytes per block version (benches/space.rs: 100,000 random 4K writes and
# 1 GiB of 1 MiB sequential writes, log and index by kind), then every
# benches/*.sh (NBD write throughput and fio small synced writes against
# qemu-nbd, mount read speed and hot and cold random reads against xmount,
# files/ against the kernel's ext4), run with their default sizes (run a
# script alone to choose its size: see its header).
bench: deps-bench build
	@if [ -f benches/store_index.rs ]; then \
	    echo "== cargo bench --bench store_index"; \
	    $(CARGO) bench --bench store_index || exit 1; \
	else \
	    echo "== benches/store_index.rs: not there, skipped"; \
	fi
	@echo "== cargo bench --bench listing"
	@DISKHIST=$(CURDIR)/$(DISKHIST) $(CARGO) bench --bench listing || exit 1
	@echo "== cargo bench --bench history"
	@$(CARGO) bench --bench history || exit 1
	@echo "== cargo bench --bench seal"
	@$(CARGO) bench --bench seal || exit 1
	@echo "== cargo bench --bench space"
	@$(CARGO) bench --bench space || exit 1
	@for s in benches/*.sh; do \
	    [ -f "$$s" ] || continue; \
	    echo "== $$s"; \
	    if [ -x "$$s" ]; then \
	        DISKHIST=$(CURDIR)/$(DISKHIST) "./$$s" || exit 1; \
	    else \
	        DISKHIST=$(CURDIR)/$(DISKHIST) bash "$$s" || exit 1; \
	    fi; \
	done
	@echo "== benches/nbd_write.sh with the source and both targets on tmpfs (TMPFS=1)"
	@TMPFS=1 DISKHIST=$(CURDIR)/$(DISKHIST) bash benches/nbd_write.sh || exit 1

# SIGKILL the recorders many more times than the suite does (tests/crash.rs),
# and many more concurrent reads during recording (tests/concurrency.rs).
SOAK_KILLS ?= 500
SOAK_SCALE ?= 5
soak: deps-test build
	DISKHIST_KILLS=$(SOAK_KILLS) $(CARGO) test --release --test crash -- --nocapture
	DISKHIST_CONCURRENCY_SCALE=$(SOAK_SCALE) $(CARGO) test --release --test concurrency -- --nocapture

# Coverage-guided fuzzing of the parsers (fuzz/README): each target for
# FUZZ_SECONDS; fuzz-short (10 s each) is the brief run `make test` includes.
FUZZ_SECONDS ?= 600
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

fuzz-short:
	bash fuzz/run.sh 10

demo: deps-demo build
	bash scripts/demo.sh $(DISKHIST)

clean:
	$(CARGO) clean
