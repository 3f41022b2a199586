// Package pb holds the protobuf types of the federation wire format
// (federation.proto) and their generated gRPC bindings. Only package
// transport uses them; everything else speaks round.Message.
package pb

//go:generate sh gen.sh
