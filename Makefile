# Thin targets over nox: `make test` is what CI runs; `make image` builds images/scooby.img.
NOX ?= nox

.PHONY: all image lint test validate setup clean
all: test

image: setup
	./scripts/build.sh

setup:
	./scripts/setup.sh

lint:
	$(NOX) -s lint

test: setup
	$(NOX) -s lint tests

validate:
	$(NOX) -s validate

clean:
	rm -rf build dist .nox
