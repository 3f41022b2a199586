// Package pb holds the protobuf types of the trainer API (trainer.proto)
// and their generated gRPC bindings. Only package trainer uses them; the
// Python client (python/cloister) has its own stubs from the same file.
package pb

//go:generate sh gen.sh
