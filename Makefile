# Every target bootstraps ./venv itself from the pinned requirement files.
PYTHON ?= python3
VENV   := venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STACK  ?=
CONFIG ?=
PYTEST_ARGS ?=

.PHONY: help test render render-all policy local run local-down jobs plan-diff bench clean
.PHONY: e2e-toolchain e2e-up e2e-down e2e-status e2e

help:
	@echo "make local [ARGS='...']  start an embedded Ray cluster and run the demo-local jobs end to end"
	@echo "                  ARGS: --config <stack file> runs any team stack's jobs (a team's own code);"
	@echo "                  --state-dir DIR --storage-path PATH --serve-port N (0: free port) for a second,"
	@echo "                  isolated cluster (venv/bin/python -m tools.local up -h)"
	@echo "make run JOB=<name> [ARGS='...']  run one job of the demo-local stack (or --config's) on the local cluster"
	@echo "make local-down [ARGS='--state-dir DIR']  stop the local Ray cluster"
	@echo "make test         run the whole test suite"
	@echo "make render STACK=<name> [CONFIG=<path>]  render a stack offline into build/render/<stack>/"
	@echo "make render-all   render every stack in stacks/"
	@echo "make policy       run the policy pack's rules over every stack offline"
	@echo "make plan-diff BASE=<rev>  Markdown diff of every stack's offline render, BASE vs working tree"
	@echo "make jobs [ARGS='...']  list/inspect jobs on a Ray dashboard (see README)"
	@echo "make bench [ARGS='--quick']  benchmarks against plain baselines (~10 min) -> build/bench/results.json"
	@echo "make e2e-toolchain  build the pinned Pulumi CLI, control plane, KWOK, KubeRay from Go modules (cached; docs/e2e.md)"
	@echo "make e2e-up     start the loopback control plane + KWOK nodes + KubeRay operator + chart mirror; writes build/e2e/env.sh"
	@echo "make e2e-down   stop everything e2e-up started"
	@echo "make e2e        the e2e tests (pytest -m e2e tests/e2e), reusing a running e2e-up"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

render: $(STAMP)
	@test -n "$(STACK)$(CONFIG)" || { echo 'usage: make render STACK=<name> | CONFIG=<path>' >&2; exit 2; }
	$(PY) -m tools.render $(if $(CONFIG),--config $(CONFIG),--stack $(STACK))

render-all: $(STAMP)
	$(PY) -m tools.render --all

policy: $(STAMP)
	$(PY) -m tools.policy_check $(if $(STACK),--stack $(STACK))

# Exit 2 from the tool means "changed": a result, not a failure.
PLAN_DIFF_OUT ?= build/plan-diff.md
plan-diff: $(STAMP)
	@test -n "$(BASE)" || { echo 'usage: make plan-diff BASE=<git rev>' >&2; exit 2; }
	$(PY) -m tools.plan_diff --base $(BASE) --out $(PLAN_DIFF_OUT) || test $$? -eq 2

local: $(STAMP)
	$(PY) -m tools.local up $(ARGS)

run: $(STAMP)
	@test -n "$(JOB)" || { echo 'usage: make run JOB=<job name from stacks/Pulumi.demo-local.yaml>' >&2; exit 2; }
	$(PY) -m tools.local run $(JOB) $(ARGS)

local-down: $(STAMP)
	$(PY) -m tools.local down $(ARGS)

jobs: $(STAMP)
	$(PY) -m tools.monitor $(ARGS)

# Never part of `make test`. ARGS: --quick | --only <section>... | --repeats N (python -m bench -h).
bench: $(STAMP)
	$(PY) -m bench $(ARGS)

# e2e (docs/e2e.md). The toolchain is stdlib Python. e2e-up and e2e build the whole toolchain first
# (a no-op once cached) and stop there, naming the step, if any of it cannot be built.
# RAY_PLATFORM_E2E_KUBERAY_OPERATOR=<binary> runs that operator instead of the toolchain's (docs/e2e.md).
e2e-toolchain:
	$(PYTHON) -m tools.e2e.toolchain build --keep-going

# The venv: `up` deploys the local platform stack with the real CLI, whose language host runs the
# program in ./venv.
e2e-up: $(STAMP) e2e-toolchain
	$(PY) -m tools.e2e.controlplane up $(ARGS)

e2e-down:
	$(PYTHON) -m tools.e2e.controlplane down

e2e-status:
	$(PYTHON) -m tools.e2e.toolchain status; $(PYTHON) -m tools.e2e.controlplane status

e2e: $(STAMP) e2e-toolchain
	$(PY) -m pytest -m e2e tests/e2e $(PYTEST_ARGS)

clean:
	rm -rf build
