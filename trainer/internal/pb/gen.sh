#!/bin/sh
# gen.sh regenerates trainer.pb.go and trainer_grpc.pb.go from trainer.proto
# (run by `go generate ./trainer/...`), and the Python stubs
# python/cloister/trainer_pb2.py and trainer_pb2_grpc.py.
#
# Tools, at these exact versions:
#   protoc 3.21.12          Debian's protobuf-compiler (apt-get install protobuf-compiler)
#   grpc_python_plugin      Debian's protobuf-compiler-grpc (1.51)
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
plugin=$(command -v grpc_python_plugin) || { echo "gen.sh: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2; exit 1; }

protoc --go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	trainer.proto

py=../../../python/cloister
protoc --python_out="$py" --grpc_python_out="$py" --plugin=protoc-gen-grpc_python="$plugin" trainer.proto
# The plugin imports the messages as a top-level module; inside the
# package they are a sibling module.
sed -i 's/^import trainer_pb2 as trainer__pb2$/from . import trainer_pb2 as trainer__pb2/' "$py/trainer_pb2_grpc.py"
grep -q '^from \. import trainer_pb2 as trainer__pb2$' "$py/trainer_pb2_grpc.py" || { echo "gen.sh: could not fix the import in trainer_pb2_grpc.py" >&2; exit 1; }
