#!/bin/sh
# gen.sh regenerates federation.pb.go and federation_grpc.pb.go from
# federation.proto (run by `go generate ./transport/...`).
#
# Tools, at these exact versions:
#   protoc 3.21.12          Debian's protobuf-compiler (apt-get install protobuf-compiler)
#   protoc-gen-go v1.36.12  go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   protoc-gen-go-grpc 1.5.1 go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
set -eu
cd "$(dirname "$0")"

check() {
	got=$("$1" --version 2>&1) || { echo "gen.sh: $1 not found; see the versions above" >&2; exit 1; }
	case "$got" in
	*"$2") ;;
	*) echo "gen.sh: $1 is \"$got\", want $2" >&2; exit 1 ;;
	esac
}
check protoc 3.21.12
check protoc-gen-go v1.36.12
check protoc-gen-go-grpc 1.5.1

protoc --go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	federation.proto
