.PHONY: test run bench fmt

# The whole suite: installs what tests need, lint, cross-build, race tests.
test:
	./scripts/test.sh

# A real gateway on embedded defaults.
run:
	go run ./examples/gatewayd

bench:
	go test -run '^$$' -bench . -benchmem ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
