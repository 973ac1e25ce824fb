# The two commands: `make run` and `make test`. Both set up what they need first.
# Python 3.13, as Lambda's python3.13 runtime: python3.13 on PATH, else pyenv's newest 3.13.
PYTHON ?= $(firstword $(foreach p,$(shell command -v python3.13 2>/dev/null) $(shell ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 2>/dev/null | sort -rV),$(shell $(p) -c 'import sys; print("$(p)" if sys.version_info[:2] == (3, 13) else "")' 2>/dev/null)))
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements-dev.txt layers/imagerepo/requirements.txt | cksum | cut -d' ' -f1)
SAM_VENV := .venv-sam

.PHONY: run test test-unit lint bench build clean setup services onedrive-standin deploy-web invoke soak

$(STAMP):
	@test -n "$(PYTHON)" || { echo "Python 3.13 is required (Lambda python3.13): install python3.13 (e.g. 'pyenv install 3.13' or your OS package) or run make PYTHON=/path/to/python3.13" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else "Python 3.13 is required, $(PYTHON) is " + sys.version.split()[0])'
	@test -x $(PY) && $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m devstack.pgbinaries $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

## make run: local Postgres + SeaweedFS + the API on http://127.0.0.1:$${PORT:-3000}
run: $(STAMP)
	$(PY) -m devstack run

## make test: the whole suite (unit, integration against real Postgres/S3, end-to-end over HTTP)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

services: $(STAMP)
	$(PY) -m devstack services

## make invoke FUNCTION=HealthFunction [EVENT=tests/events/health.json] [ENV_VARS=env.json]: one function once (sam local invoke without Docker)
invoke: $(STAMP)
	@test -n "$(FUNCTION)" || { echo "usage: make invoke FUNCTION=<LogicalId> [EVENT=file.json|-] [ENV_VARS=file.json]" >&2; exit 2; }
	@$(PY) -m devstack invoke $(FUNCTION) $(if $(EVENT),-e $(EVENT)) $(if $(ENV_VARS),--env-vars $(ENV_VARS))

## make onedrive-standin: a local Microsoft identity platform + Graph (HTTPS) to try the OneDrive flow
onedrive-standin: $(STAMP)
	$(PY) -m devstack.onedrive_standin

## make soak: 16 clients against a fresh stack with GC every 2 s and a SIGKILL halfway (SOAK_SECONDS, default 600)
soak: $(STAMP)
	$(PY) -m devstack.soak

$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli

## make lint: ruff, mypy, cfn-lint and sam validate --lint
lint: $(STAMP) $(SAM_VENV)/bin/sam
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy layers/imagerepo/imagerepo devstack client/imagerepo_cli
	@for f in functions/*/app.py; do $(VENV)/bin/mypy --no-error-summary $$f || exit 1; done
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(SAM_VENV)/bin/sam validate --lint --template template.yaml

## make build: sam build; the layer's wheels are resolved for arm64/cp313 (layers/imagerepo/Makefile), then checked
build: $(STAMP) $(SAM_VENV)/bin/sam
	PYTHON=$(abspath $(PY)) $(SAM_VENV)/bin/sam build --template template.yaml
	IMAGEREPO_REQUIRE_LAYER_BUILD=1 $(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layer_build.py

## make deploy-web STACK=<stack>: web/ to the stack's site bucket, then a CloudFront invalidation (AWS CLI)
deploy-web:
	@test -n "$(STACK)" || { echo "usage: make deploy-web STACK=<the deployed stack's name>" >&2; exit 2; }
	@out() { aws cloudformation describe-stacks --stack-name "$(STACK)" --output text \
	  --query "Stacks[0].Outputs[?OutputKey=='$$1'].OutputValue"; }; \
	bucket=$$(out SiteBucketName) && dist=$$(out SiteDistributionId) && url=$$(out SiteUrl) && \
	aws s3 sync web/ "s3://$$bucket/" --delete --cache-control no-cache && \
	aws cloudfront create-invalidation --distribution-id "$$dist" --paths '/*' >/dev/null && \
	echo "gallery deployed: $$url"

bench: $(STAMP)
	PYTHONPATH=layers/imagerepo:. $(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache
