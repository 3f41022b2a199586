#!/usr/bin/env bash
# demo.sh (make compose-demo): a federation of a coordinator and three sites
# in containers, from provisioning to the audit.
#
#  1. provisions ./run as a federation admin and three sites would: a CA
#     (cloister ca init), the signed manifest and one kit per party
#     (cloister init --ca), the CA's revocation list (cloister ca crl), an
#     observer certificate for the dashboard (cloister ca issue --role
#     observer), each site's at-rest key (store.key) in its kit, and the
#     password of the coordinator's PostgreSQL store (for the server, and
#     as the coordinator's passfile);
#  2. starts docker-compose.yml: PostgreSQL, the coordinator, then the
#     three nodes;
#  3. waits for every node to finish (the session is over) and checks the
#     coordinator's /status and /rounds over HTTPS with the observer
#     certificate: every round committed;
#  4. stops the coordinator, checks that every round is in the PostgreSQL
#     store, and runs cloister audit verify on every log.
#
# It exits non-zero on any failure, after printing the containers' logs.
#
# Environment: CLOISTER_IMAGE (cloister:dev), CLOISTER_POSTGRES_IMAGE
# (cloister-postgres:15, make postgres-image), CLOISTER (the host's cloister
# binary; default: the one make image built), ROUNDS (3), TIMEOUT (seconds,
# 900), FMNIST_DIR (/usr/share/datasets/fashion-mnist).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"
run=$here/run
project=cloister-demo
export CLOISTER_IMAGE=${CLOISTER_IMAGE:-cloister:dev}
export CLOISTER_POSTGRES_IMAGE=${CLOISTER_POSTGRES_IMAGE:-cloister-postgres:15}
cloister=${CLOISTER:-$repo/out/image/rootfs/usr/local/bin/cloister}
rounds=${ROUNDS:-3}
timeout=${TIMEOUT:-900}
fmnist=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}

say() { echo "compose-demo: $*"; }
fail() {
	echo "compose-demo: FAIL: $*" >&2
	exit 1
}

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose -p "$project")
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose -p "$project")
else
	fail "neither 'docker compose' nor docker-compose is installed"
fi
for tool in curl jq; do
	command -v $tool >/dev/null || fail "$tool is missing: apt-get install $tool"
done
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info)"
docker image inspect "$CLOISTER_IMAGE" >/dev/null 2>&1 || fail "no image $CLOISTER_IMAGE: run make image"
docker image inspect "$CLOISTER_POSTGRES_IMAGE" >/dev/null 2>&1 || fail "no image $CLOISTER_POSTGRES_IMAGE: run make postgres-image"
[ -x "$cloister" ] || fail "no cloister binary at $cloister: run make image, or set CLOISTER"
[ -f "$fmnist/train-images-idx3-ubyte.gz" ] || fail "no Fashion-MNIST in $fmnist: apt-get install dataset-fashion-mnist"

# The containers run as the image's user 65532, who must own ./run; a user
# who cannot give files away runs them as herself instead (still not root).
if [ "$(id -u)" = 0 ]; then
	export CLOISTER_UID=65532 CLOISTER_GID=65532
else
	CLOISTER_UID=$(id -u) CLOISTER_GID=$(id -g)
	export CLOISTER_UID CLOISTER_GID
fi

logs() {
	"${compose[@]}" logs --no-color --tail=40 >&2 || true
}
cleanup() {
	status=$?
	if [ $status -ne 0 ]; then
		logs
	fi
	"${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
	exit $status
}

# ── 1. Provision ─────────────────────────────────────────────────────────────
"${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
rm -rf "$run"
mkdir -p "$run/crl" "$run/postgres" "$run/store"
mkdir -m 0700 -p "$run/state/coordinator" "$run/state/node-1" "$run/state/node-2" "$run/state/node-3"
trap cleanup EXIT
say "provisioning $run (rounds: $rounds)"
# The admin: a CA kept offline, then the federation it signs. The nodes dial
# coordinator:7443, the coordinator's name on their networks; its
# certificate also names localhost and 127.0.0.1.
"$cloister" ca init --dir "$run/ca" --name "compose-demo CA"
"$cloister" init --ca "$run/ca" --dir "$run/fed" --federation compose-demo \
	--nodes 3 --threshold 2 --mode mhe --rounds "$rounds" --local-epochs 1 --batch 64 --lr 0.05 \
	--dp-noise 0 --address coordinator:7443
"$cloister" ca crl --ca "$run/ca" >/dev/null
cp "$run/ca/crl.der" "$run/crl/crl.der"
"$cloister" ca issue --role observer --ca "$run/ca" --out "$run/observer" demo >/dev/null
# Each site: its at-rest key, kept with its kit (the kit is mounted
# read-only, so the node cannot create it there itself).
for i in 1 2 3; do
	(umask 077 && head -c 32 /dev/urandom >"$run/fed/node-$i/store.key")
done
# The store's password: the server's first start sets it (the image's user
# postgres, 100:102, reads it), and the coordinator reads it from its
# passfile (hex: no ':' or '\' to escape).
pgpw=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && echo "$pgpw" >"$run/postgres/password" && echo "postgres:5432:cloister:cloister:$pgpw" >"$run/store/pgpass")
if [ "$(id -u)" = 0 ]; then
	chown -R "$CLOISTER_UID:$CLOISTER_GID" "$run/fed" "$run/crl" "$run/state" "$run/store"
	chown -R 100:102 "$run/postgres"
else
	# The server runs as another user: it must be able to read the file.
	chmod 0755 "$run/postgres" && chmod 0644 "$run/postgres/password"
fi

# ── 2. Run ───────────────────────────────────────────────────────────────────
start=$(date +%s)
"${compose[@]}" up -d postgres
pg=$("${compose[@]}" ps -q postgres)
for _ in $(seq 120); do
	[ "$(docker inspect -f '{{.State.Health.Status}}' "$pg")" = healthy ] && break
	[ "$(docker inspect -f '{{.State.Running}}' "$pg")" = true ] || fail "PostgreSQL exited"
	sleep 0.5
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$pg")" = healthy ] ||
	fail "PostgreSQL is not ready after 60 s"
say "PostgreSQL up (the coordinator's store, on the store network only)"
"${compose[@]}" up -d coordinator
port=$("${compose[@]}" port coordinator 9464 | sed 's/.*://')
[ -n "$port" ] || fail "the coordinator's metrics port is not published"
get() {
	curl -fsS --max-time 10 --cacert "$run/observer/ca.pem" --cert "$run/observer/cert.pem" \
		--key "$run/observer/key.pem" "https://127.0.0.1:$port$1"
}
for _ in $(seq 100); do
	get /status >/dev/null 2>&1 && break
	sleep 0.3
done
get /status >/dev/null || fail "the coordinator's /status does not answer on 127.0.0.1:$port"
say "coordinator up; dashboard https://127.0.0.1:$port/ (observer certificate in $run/observer)"
"${compose[@]}" up -d node-1 node-2 node-3

# ── 3. Wait for the session's end ────────────────────────────────────────────
ids=()
for n in node-1 node-2 node-3; do
	id=$("${compose[@]}" ps -q "$n")
	[ -n "$id" ] || fail "no container for $n"
	ids+=("$id")
done
last=""
deadline=$((start + timeout))
while :; do
	running=0
	for id in "${ids[@]}"; do
		[ "$(docker inspect -f '{{.State.Running}}' "$id")" = true ] && running=$((running + 1))
	done
	st=$(get /status 2>/dev/null | jq -c '{phase, round, commits}' 2>/dev/null || true)
	if [ -n "$st" ] && [ "$st" != "$last" ]; then
		say "$(($(date +%s) - start))s: coordinator $st"
		last=$st
	fi
	[ $running = 0 ] && break
	[ "$(date +%s)" -lt $deadline ] || fail "the federation did not finish in ${timeout}s"
	[ "$(docker inspect -f '{{.State.Running}}' "$("${compose[@]}" ps -q coordinator)")" = true ] ||
		fail "the coordinator exited"
	sleep 2
done
elapsed=$(($(date +%s) - start))
for i in 0 1 2; do
	code=$(docker inspect -f '{{.State.ExitCode}}' "${ids[$i]}")
	[ "$code" = 0 ] || fail "node-$((i + 1)) exited with status $code"
done
status=$(get /status)
history=$(get /rounds)
phase=$(jq -r .phase <<<"$status")
commits=$(jq -r .commits <<<"$status")
[ "$phase" = done ] || fail "the coordinator's phase is $phase, not done"
[ "$commits" = "$rounds" ] || fail "$commits rounds committed, want $rounds"
jq -r '.history[] | "round \(.round): \(.outcome), leader \(.leader), included \(.included | join(",")), \(.seconds)s, accuracy \(.accuracy // "-")"' <<<"$history" |
	sed 's/^/compose-demo:   /'
say "federation finished in ${elapsed}s: $commits of $rounds rounds committed, every node exited 0"

# ── 4. Audit ─────────────────────────────────────────────────────────────────
"${compose[@]}" stop -t 20 coordinator >/dev/null
mkdir -p "$run/logs"
stored=$("${compose[@]}" exec -T postgres psql -q -At -d cloister -c \
	"SELECT count(*) FROM rounds WHERE outcome = 1" 2>&1) || fail "cannot read the store: $stored"
[ "$stored" = "$rounds" ] || fail "$stored committed rounds in the PostgreSQL store, want $rounds"
say "the PostgreSQL store holds the $stored committed rounds"
for s in postgres coordinator node-1 node-2 node-3; do
	"${compose[@]}" logs --no-color "$s" >"$run/logs/$s.txt" 2>&1 || true
done
say "cloister audit verify $run/state"
out=$("$cloister" audit verify --kit "$run/fed/coordinator" "$run/state") || {
	echo "$out"
	fail "audit verify failed"
}
echo "$out"
n=$(grep -c '^ok ' <<<"$out" || true)
[ "$n" = 4 ] || fail "$n audit logs verified, want 4 (the coordinator and three nodes)"
grep -q "^ok .*coordinator/audit.log: .* $rounds rounds committed (each cosigned" <<<"$out" ||
	fail "the coordinator's log does not hold $rounds cosigned commits"
say "ok: $rounds rounds in containers, 4 audit logs verified (logs in $run/logs)"
