# Skiff: `make run` and `make test` do everything on a fresh Debian/Ubuntu machine.
# Every cargo call goes through scripts/cargo, which links against a RocksDB built once
# into $(HOME)/.cache/skiff (see scripts/rocksdb-cache.sh).

CARGO      := scripts/cargo
CACHE_DIR  := $(or $(SKIFF_CACHE_DIR),$(HOME)/.cache/skiff)
DATA_DIR   ?= $(CURDIR)/data/default.etcd
CLIENT_URL ?= http://127.0.0.1:2379
PEER_URL   ?= http://127.0.0.1:2380

.PHONY: run run-store test deps build release clippy fmt rocksdb clean-data

## deps: install the system packages the build and the tests need (idempotent).
deps:
	@scripts/install-deps.sh

## rocksdb: build RocksDB's C++ once into the cache (no-op when cached).
rocksdb: deps
	@mkdir -p $(CACHE_DIR)
	@flock $(CACHE_DIR)/rocksdb.lock scripts/rocksdb-cache.sh >/dev/null

release: rocksdb
	$(CARGO) build --release --locked --bin skiff

## run: build release and start `skiff up`: a store member and the Kubernetes API server
## (https://127.0.0.1:6443); data, PKI and kubeconfig in $(CURDIR)/data.
run: release
	@mkdir -p $(CURDIR)/data
	target/release/skiff up --data-dir $(CURDIR)/data

## run-store: build release and start a single-member store only on 127.0.0.1:2379.
run-store: release
	@mkdir -p $(dir $(DATA_DIR))
	@echo "skiff store: data in $(DATA_DIR); try:"
	@echo "  ETCDCTL_API=3 etcdctl --endpoints=$(CLIENT_URL) put foo bar"
	@echo "  ETCDCTL_API=3 etcdctl --endpoints=$(CLIENT_URL) get foo -w json"
	@echo "  curl -s $(CLIENT_URL)/metrics | grep etcd_disk_wal_fsync"
	target/release/skiff store --name default --data-dir $(DATA_DIR) \
	  --listen-client-urls $(CLIENT_URL) --advertise-client-urls $(CLIENT_URL) \
	  --listen-peer-urls $(PEER_URL) --initial-advertise-peer-urls $(PEER_URL) \
	  --initial-cluster default=$(PEER_URL)

## test: install what is missing, build, and run every test.
test: rocksdb
	$(CARGO) build --locked --workspace --all-targets
	$(CARGO) test --locked --workspace --no-fail-fast
	# Failpoints are process-wide, so the WAL's failpoint tests are their own binary and feature.
	$(CARGO) test --locked -p skiff-raft --features failpoints --test failpoints
	# A crash at each durability step of a cluster member: the skiff binary rebuilt with
	# failpoints compiled in (inert unless FAILPOINTS names one), then only those tests.
	$(CARGO) test --locked -p skiff --features failpoints --test it cluster::failpoints::

## bench-vs-etcd: skiff against Debian's etcd on this machine with the release build, every
## table of BENCHMARKS.md: `skiff bench compare` (1 and 3 members), `skiff bench failover`
## (3 and 5 members, every mode; the partition mode puts members in network namespaces,
## which needs root), then the scripts of benches/scripts/ (CPU per put and per range, watch
## memory, slow watchers, 1M keys). Results and SVG plots in benches/results/. About 45 min.
BENCH_SCRIPTS_ENV = SKIFF=target/release/skiff ETCD=/usr/bin/etcd
.PHONY: bench-vs-etcd
bench-vs-etcd: release
	target/release/skiff bench --conns 8 --clients 64 compare --members 1,3 --duration 10s \
	  --out benches/results/compare --update-doc BENCHMARKS.md
	target/release/skiff bench --clients 16 failover --members 3,5 --rounds 5 --rate 1500 --net netns \
	  --modes kill-leader,kill-follower,pause-leader,kill-minority,isolate-leader \
	  --out benches/results/failover --update-doc BENCHMARKS.md
	$(BENCH_SCRIPTS_ENV) benches/scripts/put-cpu.sh 3 > benches/results/put-cpu.md
	benches/scripts/doc-section.sh put-cpu BENCHMARKS.md < benches/results/put-cpu.md
	$(BENCH_SCRIPTS_ENV) benches/scripts/range-cpu.sh > benches/results/range-cpu.md
	benches/scripts/doc-section.sh range-cpu BENCHMARKS.md < benches/results/range-cpu.md
	$(BENCH_SCRIPTS_ENV) benches/scripts/watch-memory.sh 10000 100000 > benches/results/watch-memory.md
	benches/scripts/doc-section.sh watch-memory BENCHMARKS.md < benches/results/watch-memory.md
	$(BENCH_SCRIPTS_ENV) benches/scripts/slow-watchers.sh 100 > benches/results/slow-watchers.md
	benches/scripts/doc-section.sh slow-watchers BENCHMARKS.md < benches/results/slow-watchers.md
	$(BENCH_SCRIPTS_ENV) benches/scripts/scale-1m.sh > benches/results/scale-1m.md
	benches/scripts/doc-section.sh scale-1m BENCHMARKS.md < benches/results/scale-1m.md

clippy: rocksdb
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean-data:
	rm -rf $(CURDIR)/data
