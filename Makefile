# Pancap Serve build, test and code generation. `make help` lists the targets.

GO              ?= go
PYTHON          ?= $(CURDIR)/.venv/bin/python
BIN             := $(CURDIR)/bin
BUF_VERSION     := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
VERSION         ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS         := -X github.com/pancap-serve/pancap/internal/buildinfo.version=$(VERSION)

.PHONY: help build test go-test python-test python-client openai-test bench-openai proto proto-tools proto-check run bench lint soak train-tiny embed-model train-smoke bench-model bench-go bench-kernels fuzz-smoke golden kernels cuda-check gpu-test-binary

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/pancap
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/pancap ./cmd/pancap

test: lint go-test python-test openai-test proto-check fuzz-smoke cuda-check deploy-check ## everything CI runs: vet, gofmt, go test -race, the Python and OpenAI SDK tests, proto staleness, fuzz smoke, the cuda build on the emulated driver, the container image and the Helm chart

go-test: ## go test -race ./...
	$(GO) test -race ./...

$(CURDIR)/.venv/bin/python: ## the venv of the Python client's tests (sees Debian's packages)
	/usr/bin/python3 -m venv --system-site-packages .venv
	.venv/bin/pip install --quiet grpcio grpcio-tools pytest

python-client: $(PYTHON) ## install the Python client into .venv as users do (pip install clients/python; the build generates its stubs)
	$(PYTHON) -m pip install --quiet ./clients/python

python-test: build python-client ## the Python client's tests against a real `pancap serve`
	cd clients/python && PANCAP_BIN=$(BIN)/pancap $(PYTHON) -m pytest -q tests

openai-test: build python-client ## the official openai SDK against a real `pancap serve --http-addr` (clients/openai-test)
	$(PYTHON) -m pip install --quiet -r clients/openai-test/requirements-test.txt
	cd clients/openai-test && PANCAP_BIN=$(BIN)/pancap $(PYTHON) -m pytest -q tests

AIPERF_VENV     := $(CURDIR)/.cache/venv-aiperf

$(AIPERF_VENV)/bin/aiperf: clients/openai-test/requirements-bench.txt ## the load generator's venv (AIPerf pinned, no torch)
	/usr/bin/python3 -m venv --system-site-packages $(AIPERF_VENV)
	$(AIPERF_VENV)/bin/pip install --quiet -r clients/openai-test/requirements-bench.txt
	touch $@

bench-openai: build $(AIPERF_VENV)/bin/aiperf ## AIPerf over the HTTP API vs pancap bench over gRPC, same workload: TTFT/ITL within 10% (not in CI)
	PANCAP=$(BIN)/pancap AIPERF=$(AIPERF_VENV)/bin/aiperf PYTHON=$(AIPERF_VENV)/bin/python clients/openai-test/bench.sh

proto-tools: ## install the pinned buf and protoc plugins into bin/ (built through the Go module proxy when missing)
	@$(BIN)/buf --version 2>/dev/null | grep -qx '$(BUF_VERSION:v%=%)' || \
		{ echo "proto-tools: building buf $(BUF_VERSION) into bin/ (once, about two minutes)"; \
		  GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION); }
	@$(BIN)/protoc-gen-go --version 2>/dev/null | grep -q ' $(PROTOC_GEN_GO_VERSION)$$' || \
		GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@$(BIN)/protoc-gen-go-grpc --version 2>/dev/null | grep -q ' $(PROTOC_GEN_GO_GRPC_VERSION:v%=%)$$' || \
		GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: proto-tools ## regenerate the Go code of the API (buf.gen.yaml)
	$(BIN)/buf generate

proto-check: proto ## fail when the committed generated code is stale
	@git diff --exit-code -- proto/ || { echo "generated code in proto/ is stale: run make proto and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard proto/)" || \
		{ echo "untracked generated files in proto/: run make proto and commit"; exit 1; }

run: build ## serve the embedded default model on 127.0.0.1:50051
	$(BIN)/pancap serve

bench: build ## chain reuse vs baseline on the bench preset (about 10 min): benchmarks/results/
	tools/bench.sh

bench-model: ## whole-model numbers on the bench preset: vision, prefill, decode at batch 1/4/8/16
	$(GO) test -run '^$$' -bench BenchmarkBenchPreset -benchtime 60x ./model/

bench-go: ## Go microbenchmarks (compare runs with benchstat)
	$(GO) test -run '^$$' -bench . ./...

bench-kernels: ## CPU kernels against STREAM-like bandwidth and OpenBLAS sgemm (needs libopenblas-dev)
	$(GO) run -tags openblas ./tools/bench-kernels

fuzz-smoke: ## every fuzz target for a few seconds (FUZZTIME, default 3s)
	tools/fuzz-smoke.sh

golden: ## regenerate the reference checkpoints and golden files (needs the .venv with torch, transformers 4.37.2)
	$(PYTHON) tools/reference/generate.py
	$(PYTHON) tools/reference/tokenizer_golden.py
	$(PYTHON) tools/reference/imageproc_golden.py

kernels: ## regenerate the CUDA PTX (fetches the CUDA 11.8 toolkit when missing)
	tools/cuda/build-ptx.sh

cuda-check: ## compile, vet and link the cuda build, check the committed PTX (no GPU needed)
	tools/cuda/check.sh

gpu-test-binary: ## a self-contained CUDA test bundle to run on a GPU machine
	tools/cuda/gpu-test-binary.sh

lint: ## go vet and a gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }

TRAIN_DATA      ?= $(CURDIR)/training/data
TRAIN_DATA_CUR  ?= $(CURDIR)/training/data-cur
TRAIN_RUN       ?= $(CURDIR)/training/runs/tiny
TRAIN_MINUTES   ?= 120

train-tiny: ## train the small PancapChain on synthetic scenes (about 2.3 h on 2 cores; see training/README.md)
	PYTHON=$(PYTHON) DATA=$(TRAIN_DATA) DATA_CUR=$(TRAIN_DATA_CUR) training/recipe.sh $(TRAIN_RUN) $(TRAIN_MINUTES)
	$(PYTHON) training/export.py --run $(TRAIN_RUN)/full --dtype bfloat16
	PYTHON=$(PYTHON) training/e2e.sh $(TRAIN_RUN)/full $(TRAIN_DATA) 0 5

embed-model: ## make the export of train-tiny (TRAIN_RUN/export) the embedded default model
	test -f $(TRAIN_RUN)/export/llava/config.json
	rm -rf model/embedded/synth
	mkdir -p model/embedded/synth
	cp -r $(TRAIN_RUN)/export/llava $(TRAIN_RUN)/export/clip model/embedded/synth/

train-smoke: ## the whole training pipeline in about 6 minutes (200 scenes, 5 minutes of training)
	rm -rf $(CURDIR)/training/runs/smoke
	$(PYTHON) training/scenes.py --out $(CURDIR)/training/data-smoke --train 200 --val 20 --test 20
	$(PYTHON) training/train.py --data $(CURDIR)/training/data-smoke --run $(CURDIR)/training/runs/smoke --minutes 5 --threads 1 --batch 8
	$(PYTHON) training/export.py --run $(CURDIR)/training/runs/smoke
	PYTHON=$(PYTHON) training/e2e.sh $(CURDIR)/training/runs/smoke $(CURDIR)/training/data-smoke 20 2

GHZ_VERSION     := v0.93.0
SOAK_DURATION   ?= 10m

soak: build ## soak test (not in CI): ghz against pancap serve on loopback for SOAK_DURATION (default 10m)
	@test -x $(BIN)/ghz || GOBIN=$(BIN) $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	SOAK_DURATION=$(SOAK_DURATION) SOAK_PANCAP=$(BIN)/pancap SOAK_GHZ=$(BIN)/ghz $(GO) run ./tools/soak

# Deployment: container images, the Helm chart, the multi-replica test (docs/deploy.md).
.PHONY: image image-cuda image-test helm-check deploy-check scale-test
IMAGE           ?= pancap:dev
IMAGE_CUDA      ?= pancap-cuda:dev
CONTAINER       ?= docker

image: ## build the CPU image (deploy/docker/Dockerfile) with CONTAINER (docker or podman): IMAGE, default pancap:dev
	$(CONTAINER) build -f deploy/docker/Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE) .

image-cuda: ## build the CUDA image (deploy/docker/Dockerfile.cuda): IMAGE_CUDA, default pancap-cuda:dev
	$(CONTAINER) build -f deploy/docker/Dockerfile.cuda --build-arg VERSION=$(VERSION) -t $(IMAGE_CUDA) .

image-test: build ## build and run the CPU image with Debian's podman, no registry needed (about 15 s; apt-get install podman runc)
	deploy/docker/test-image.sh

helm-check: ## helm lint, and helm template | kubeconform -strict against the vendored schemas, offline
	deploy/helm/check.sh

deploy-check: image-test helm-check ## the deployment checks CI can run: image-test and helm-check

scale-test: build ## 3 replicas behind nginx and the client's round_robin: bench 1→3, SIGTERM and SIGKILL mid-run (about 2.5 min; apt-get install nginx-light)
	SCALE_PANCAP=$(BIN)/pancap $(GO) run ./tools/scale-test

.PHONY: bench-spec
bench-spec: build ## speculative decoding on vs off side by side: synth on 64 held-out scenes and the bench preset, at concurrency 1 and 16 (about 12 min; SPEC_BENCH=0 skips the bench preset): benchmarks/results/spec.md
	tools/bench-spec.sh

# The CUDA path's GPU session (docs/cuda.md).
.PHONY: gpu-bundle
gpu-bundle: ## one GPU session in a bundle (≤ 60 MiB): cuda pancap, tests, golden cases, run.sh (tests, 13b serve + bench at 1/8/32, op benchmarks, JSON/markdown summary): dist/pancap-gpu-bundle.tar.gz
	tools/cuda/gpu-bundle.sh
