# Thin targets over the scripts, for those who have make (the scripts need only bash):
# `make image` builds images/scooby.img, `make test` runs every check and test (what CI runs).
NOX ?= .venv/bin/nox

.PHONY: all image lint test validate setup clean
all: test

image:
	./scripts/build.sh

test:
	./scripts/test.sh

setup:
	./scripts/setup.sh

lint: setup
	$(NOX) -s lint

validate: setup
	$(NOX) -s validate

clean:
	rm -rf build dist .nox
