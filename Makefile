# passerelle — every target works on a fresh machine with only Go installed; tools it needs are
# installed under ./bin by the Makefile itself.
GO        ?= go
BIN       := $(CURDIR)/bin
STATICCHECK_VERSION := v0.8.2
# A count, not a duration: Go 1.26's fuzz coordinator can fail a duration-bounded run with a bare
# "context deadline exceeded" at its end (golang/go#75804, fixed in Go 1.27). 100 000 inputs take
# one to ten seconds per target here.
FUZZTIME  ?= 100000x
PKGS      := ./...
export GOFLAGS ?= -mod=mod

.PHONY: run test test-go test-faults fuzz lint bench build tools config-table clean

## run: the daemon on the embedded broker, wired to the built-in partner simulators
# Built, then exec'd: make forwards SIGTERM to its child, and with exec the child is the daemon
# itself (`go run` would not pass the signal on to the program it built).
run: build
	exec $(BIN)/passerelle sandbox

## test: the whole suite: the tests (race detector on), the fault suite, then each fuzz target briefly
test: k8s-tools test-go test-faults fuzz

# The fault suite's tests: the package internal/faults (the built binary under kill -9, a 3-node
# NATS cluster, three replicas on PostgreSQL) and two in-process tests of internal/app that need its
# fixture (the full disk is injected there when tmpfs cannot be mounted). test-go leaves them out,
# so that make test runs them once, in test-faults, with their figures printed.
FAULT_PKG  := ./internal/faults/
APP_FAULTS := ^(TestFullDiskPausesAndRecovers|TestGoneEndpointHoldsItsEvents)$$

test-go:
	$(GO) test -race -count=1 -timeout 20m -skip '$(APP_FAULTS)' $$($(GO) list $(PKGS) | grep -v '/internal/faults$$')

## test-faults: the fault suite (kill -9 under load, a NATS node and a replica lost out of three, a full disk, a disabled endpoint); prints posted, answered 200, delivered, repeats and lost per fault; needs nats-server and PostgreSQL (about 3 minutes)
test-faults:
	@log=$$(mktemp); \
	{ $(GO) test -race -count=1 -v -timeout 15m $(FAULT_PKG); a=$$?; \
	  $(GO) test -race -count=1 -v -timeout 5m -run '$(APP_FAULTS)' ./internal/app/; b=$$?; \
	  echo $$((a | b)) > $$log.rc; } 2>&1 | tee $$log; \
	rc=$$(cat $$log.rc); echo; echo "fault suite:"; grep -E 'FAULT |known gap|poll ended on another|--- (FAIL|SKIP)|^(ok|FAIL)[[:space:]]' $$log | sed 's/^ *[a-z_0-9]*\.go:[0-9]*: //'; \
	rm -f $$log $$log.rc; exit $$rc

# Each fuzz target runs on its own for FUZZTIME (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    out=$$($(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg 2>&1) || { echo "$$out"; exit 1; }; \
	  done; \
	done

## lint: go vet, gofmt and staticcheck
lint: $(BIN)/staticcheck
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(BIN)/staticcheck $(PKGS)

## bench: throughput, latency and memory against baselines measured in the same run
bench:
	$(GO) run ./cmd/passerelle-bench

## build: the passerelle binary in ./bin
build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$$(git describe --always --dirty 2>/dev/null || echo dev)" -o $(BIN)/passerelle ./cmd/passerelle

## config-table: the README's configuration table, generated from the config struct
config-table:
	@$(GO) run ./cmd/passerelle config-table

tools: $(BIN)/staticcheck $(BIN)/kustomize $(BIN)/kubectl-validate

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean:
	rm -rf $(BIN) data

# Kubernetes manifests (deploy/kubernetes): rendered by kustomize, validated offline by
# kubectl-validate, whose Kubernetes API schemas are built in. kubeconform would download its
# schemas, and neither CI nor the developers' machines reach the network. make test installs both
# tools first: go test ./deploy/ uses them (and fails without them under CI=true).
KUSTOMIZE_VERSION        := v5.7.1
KUBECTL_VALIDATE_VERSION := v0.0.4

.PHONY: kubeconform k8s-tools

## kubeconform: render deploy/kubernetes (base and scale-out) and validate them against the Kubernetes schemas (the tools are required: CI=true)
kubeconform: k8s-tools
	CI=true $(GO) test -count=1 -run '^(TestKubernetes|TestPrometheusRuleMatchesRules)' ./deploy/

k8s-tools: $(BIN)/kustomize $(BIN)/kubectl-validate

$(BIN)/kustomize:
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

$(BIN)/kubectl-validate:
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/kubectl-validate@$(KUBECTL_VALIDATE_VERSION)
