// Package containertest runs federations in containers of the cloister
// image and tests what only separate hosts show: a site cut off from its
// network in the middle of a round, a site paused past the round's
// deadline, and a coordinator container killed and restarted. Each test
// provisions a federation, creates the containers and networks it needs
// (named cloister-ct-RANDOM-…, removed at the end), reads the outcome from
// the coordinator's /status and /rounds (over HTTPS, with an observer
// certificate) and verifies every audit log with the image's own
// `cloister audit verify`.
//
// The tests need a Docker engine and the image, so a plain `go test ./...`
// skips them; `make test-containers` builds the image and runs them:
//
//	CLOISTER_CONTAINER_TESTS=1 [CLOISTER_IMAGE=cloister:dev] go test -v ./deploy/containertest
package containertest
