# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.recipekit-installed

.PHONY: install run test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch and torchvision are pinned in pyproject.toml; pip takes both from this machine's disk.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/recipekit train

test: install
	$(BIN)/nbdev-export
	git diff --exit-code -- recipekit || (echo "recipekit/ differs from nbs/: run nbdev-export and commit"; exit 1)
	test -z "$$(git status --porcelain -- recipekit)" || (git status --porcelain -- recipekit; echo "untracked files in recipekit/: run nbdev-export and commit"; exit 1)
	$(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) _proc _docs
