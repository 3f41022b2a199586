#!/bin/sh
# Reruns the experiments behind docs/ROBUSTNESS.md and docs/PRIVACY.md.
#
#   docs/experiments.sh matrix      rules × attacks, Fashion-MNIST, 25 nodes, F = 5, IID
#   docs/experiments.sh noniid      the same on Dirichlet(0.5), with stronger attacks
#   docs/experiments.sh mlpcheck    the label-flip and sign-flip columns with the MLP
#   docs/experiments.sh backdoor    scaled backdoor with and without a clip bound
#   docs/experiments.sh privacy     DP-FedAvg at ε ≈ 1, 3, 8
#   docs/experiments.sh dpnet       the same on the networked runtime (cloister demo), mhe against plain
#   docs/experiments.sh strategies  FedAvg, FedProx, FedAdam, SCAFFOLD on Dirichlet(0.1)
#   docs/experiments.sh compression top-k and 8-bit quantization, bytes on the wire
#   docs/experiments.sh tables      print the markdown tables from the JSON
#
# Each run writes out/experiments/<group>/<name>.json and is skipped if that
# file exists, so an interrupted group resumes. Runs go one at a time: the
# machine is shared. It needs the Debian package dataset-fashion-mnist and
# jq; it is not part of `make test`.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-out/experiments}
BIN=${BIN:-$OUT/cloister}
SEED=${SEED:-1}

build() { mkdir -p "$OUT" && go build -o "$BIN" ./cmd/cloister; }

# sim GROUP NAME ARGS...: one simulation, skipped when its JSON exists.
sim() {
	group=$1 name=$2
	shift 2
	mkdir -p "$OUT/$group"
	json="$OUT/$group/$name.json"
	if [ -s "$json" ]; then
		echo "== $group/$name: done already"
		return 0
	fi
	echo "== $group/$name: $BIN simulate $*"
	if ! "$BIN" simulate --data fashion-mnist --seed "$SEED" --json "$json.tmp" "$@" >"$OUT/$group/$name.log" 2>&1; then
		echo "   failed: $(tail -n 1 "$OUT/$group/$name.log")"
		tail -n 1 "$OUT/$group/$name.log" >"$OUT/$group/$name.failed"
		return 0
	fi
	mv "$json.tmp" "$json"
	tail -n 1 "$OUT/$group/$name.log"
}

RULES="mean median trimmed:0.2 krum:f=5 multikrum:m=15,f=5 bulyan:f=5 cclip"
ATTACKS="none label-flip sign-flip gaussian scale alie alie:z=1.5 ipm ipm:eps=100"
NONIID_ATTACKS="none label-flip sign-flip alie alie:z=1.5 ipm ipm:eps=100"

# The robustness runs pin the local optimizer, so that a change of the
# command's defaults does not change them: the softmax model (the MLP's 50+
# runs take hours on 2 shared cores), SGD with lr 0.02, momentum 0.9, batch 64.
ROBUST="--model softmax --lr 0.02 --momentum 0.9 --batch 64"

# grid GROUP PARTITION ATTACKS [MODEL FLAGS]: every rule against every attack.
grid() {
	model=${4:-$ROBUST}
	for attack in $3; do
		for rule in $RULES; do
			if [ "$attack" = none ]; then a=""; else a="--attack $attack --byzantine 5"; fi
			# shellcheck disable=SC2086
			sim "$1" "$(name "$attack")--$(name "$rule")" $model --nodes 25 --partition "$2" \
				--rounds 20 --local-epochs 1 --rule "$rule" $a
		done
	done
}

name() { echo "$1" | tr ':,=' '___'; }
matrix() { grid matrix iid "$ATTACKS"; }
noniid() { grid noniid dirichlet:0.5 "$NONIID_ATTACKS"; }
# The headline columns again with the MLP ($MLP is defined below).
mlpcheck() { grid mlpcheck iid "none label-flip sign-flip" "$MLP"; }

# The clip bound: about the median honest update norm of the clean run
# after its first rounds (update_norm in its JSON: 3.1, 0.8, 0.64, 0.55,
# then 0.5 to 0.36), so that honest updates are barely touched.
CLIP=${CLIP:-0.5}
backdoor() {
	for r in 20 60; do
		common="$ROBUST --nodes 25 --partition iid --rounds $r --local-epochs 1"
		# shellcheck disable=SC2086
		{
			sim backdoor "r$r-baseline" $common --attack backdoor
			sim backdoor "r$r-attack" $common --attack backdoor --byzantine 1
			sim backdoor "r$r-baseline-clip" $common --attack backdoor --clip "$CLIP"
			sim backdoor "r$r-attack-clip" $common --attack backdoor --byzantine 1 --clip "$CLIP"
			# Norm bounding plus a little noise (Sun et al. 2019).
			sim backdoor "r$r-baseline-clip-noise" $common --attack backdoor --clip "$CLIP" --dp-noise 1
			sim backdoor "r$r-attack-clip-noise" $common --attack backdoor --byzantine 1 --clip "$CLIP" --dp-noise 1
		}
	done
	# Two ways to make a persistent attacker's backdoor decay, at 60 rounds:
	# weight decay (the trigger's weights see no honest gradient), and
	# sampling 10 of 25 sites per round (the attacker is in 40% of rounds).
	common="$ROBUST --nodes 25 --partition iid --rounds 60 --local-epochs 1"
	# shellcheck disable=SC2086
	{
		sim backdoor r60-baseline-clip-wd $common --attack backdoor --clip "$CLIP" --weight-decay 0.005
		sim backdoor r60-attack-clip-wd $common --attack backdoor --byzantine 1 --clip "$CLIP" --weight-decay 0.005
		sim backdoor r60-baseline-clip-cohort10 $common --attack backdoor --clip "$CLIP" --cohort 10
		sim backdoor r60-attack-clip-cohort10 $common --attack backdoor --byzantine 1 --clip "$CLIP" --cohort 10
	}
}

# DP-FedAvg, MLP 784-128-10, every site in every round (q = 1), 10 rounds
# of one local epoch. σ for each target ε from `cloister privacy noise`.
# NODES and CLIPS choose the federation sizes and the clip bounds tried.
MLP="--model mlp --hidden 128 --lr 0.05 --momentum 0.9 --batch 64"
NODES=${NODES:-10}
CLIPS=${CLIPS:-0.1 0.3 1}
privacy() {
	for n in $NODES; do
		common="$MLP --nodes $n --partition iid --rounds 10 --local-epochs 1"
		# shellcheck disable=SC2086
		sim privacy "n$n-plain" $common
		for c in $CLIPS; do
			# shellcheck disable=SC2086
			sim privacy "n$n-clip$c" $common --clip "$c"
			for eps in 8 3 1; do
				sigma=$("$BIN" privacy noise --epsilon "$eps" --sample-rate 1 --steps 10 --delta 1e-5 | sed -n 's/^noise multiplier σ = \([0-9.e+-]*\) .*/\1/p')
				# shellcheck disable=SC2086
				sim privacy "n$n-eps$eps-clip$c" $common --clip "$c" --dp-noise "$sigma" --delta 1e-5
			done
		done
	done
}

# netdemo GROUP NAME ARGS...: one networked `cloister demo`, skipped when its
# JSON exists.
netdemo() {
	group=$1 name=$2
	shift 2
	mkdir -p "$OUT/$group"
	json="$OUT/$group/$name.json"
	if [ -s "$json" ]; then
		echo "== $group/$name: done already"
		return 0
	fi
	echo "== $group/$name: $BIN demo $*"
	if ! "$BIN" demo --data fashion-mnist --json "$json.tmp" "$@" >"$OUT/$group/$name.log" 2>&1; then
		echo "   failed: $(tail -n 1 "$OUT/$group/$name.log")"
		return 0
	fi
	mv "$json.tmp" "$json"
	grep 'final accuracy' "$OUT/$group/$name.log"
}

# DP-FedAvg on the networked runtime, 10 node processes, the settings of the
# privacy group's 10-site rows with C = 1 (k = 10). Budgets sit just above the
# runtime's ε for 10 rounds (its dimension bound prices them a little higher
# than the simulation). Seeded noise (--insecure-dp-seed, testing only) gives
# mhe and plain the same noise; three crypto/rand runs each show the spread.
dpnet() {
	common="--nodes 10 --threshold 3 --min-cohort 10 --rounds 10 --seed $SEED $MLP --partition iid --local-epochs 1 --clip 1 --delta 1e-5"
	for row in 8:2.01649:8.1 3:4.72194:3.1 1:12.7926:1.1; do
		eps=${row%%:*} rest=${row#*:}
		sigma=${rest%%:*} budget=${rest#*:}
		for mode in mhe plain; do
			# shellcheck disable=SC2086
			netdemo dpnet "eps$eps-$mode-seeded" $common --mode "$mode" --dp-noise "$sigma" --epsilon "$budget" --insecure-dp-seed 1
		done
	done
	for i in 1 2 3; do
		for mode in mhe plain; do
			# shellcheck disable=SC2086
			netdemo dpnet "eps8-$mode-run$i" $common --mode "$mode" --dp-noise 2.01649 --epsilon 8.1
		done
	done
}

strategies() {
	common="$MLP --nodes 10 --partition dirichlet:0.1 --rounds 20 --local-epochs 1"
	# shellcheck disable=SC2086
	{
		sim strategies fedavg $common --strategy fedavg
		sim strategies fedprox $common --strategy fedavg --prox-mu 0.01
		sim strategies fedadam $common --strategy fedadam
		sim strategies fedadam-lr0.01 $common --strategy fedadam:lr=0.01
		sim strategies scaffold $common --strategy scaffold
		# Plain local SGD, where SCAFFOLD's control update is exact.
		sim strategies fedavg-sgd $common --strategy fedavg --momentum 0 --lr 0.1
		sim strategies scaffold-sgd $common --strategy scaffold --momentum 0 --lr 0.1
	}
}

# Compression: the clean softmax run of the matrix with compressed updates.
compression() {
	for c in topk:0.1 topk:0.01 q8; do
		# shellcheck disable=SC2086
		sim compression "$(name "$c")" $ROBUST --nodes 25 --partition iid --rounds 20 --local-epochs 1 --compress "$c"
	done
}

# acc FILE: final accuracy in percent, or the reason it has none.
acc() {
	if [ -s "$1" ]; then printf '%.1f' "$(jq -r '.final.accuracy*100' "$1")"
	elif [ -s "${1%.json}.failed" ]; then echo "failed"
	else echo "–"; fi
}

# gridtable GROUP ATTACKS: the rule × attack table of final accuracies.
gridtable() {
	printf '| rule |'
	for attack in $2; do printf ' %s |' "$attack"; done
	echo
	printf '|---|'
	for attack in $2; do printf -- '---:|'; done
	echo
	for rule in $RULES; do
		printf '| %s |' "$rule"
		for attack in $2; do
			printf ' %s |' "$(acc "$OUT/$1/$(name "$attack")--$(name "$rule").json")"
		done
		echo
	done
	echo
}

tables() {
	echo "### Final test accuracy (%) after 20 rounds: rule × attack, IID"
	echo
	gridtable matrix "$ATTACKS"
	if [ -d "$OUT/mlpcheck" ]; then
		echo "### The same with the MLP"
		echo
		gridtable mlpcheck "none label-flip sign-flip"
	fi
	if [ -d "$OUT/noniid" ]; then
		echo "### Final test accuracy (%) after 20 rounds: rule × attack, Dirichlet(0.5)"
		echo
		gridtable noniid "$NONIID_ATTACKS"
	fi
	if [ -d "$OUT/backdoor" ]; then
		echo "### Backdoor"
		echo
		echo "| run | main accuracy (%) | backdoor accuracy (%) | updates clipped per round | ε (δ = 1e-5) |"
		echo "|---|---:|---:|---:|---:|"
		for f in "$OUT"/backdoor/*.json; do
			jq -r --arg n "$(basename "$f" .json)" '"| \($n) | \(.final.accuracy*1000|round/10) | \(.final.backdoor_accuracy*1000|round/10) | \([.rounds[].clipped // 0]|add/length*10|round/10) | \(.final.epsilon // "–") |"' "$f"
		done
		echo
	fi
	if [ -d "$OUT/dpnet" ]; then
		echo "### dpnet"
		echo
		echo "| run | accuracy (%) | ε (δ = 1e-5) | σ | C | rounds |"
		echo "|---|---:|---:|---:|---:|---:|"
		for f in "$OUT"/dpnet/*.json; do
			jq -r --arg n "$(basename "$f" .json)" '"| \($n) | \(.final_accuracy*10000|round/100) | \(.epsilon_total) | \(.dp.noise_multiplier) | \(.dp.clip) | \(.rounds) |"' "$f"
		done
		echo
	fi
	for g in privacy strategies; do
		[ -d "$OUT/$g" ] || continue
		echo "### $g"
		echo
		echo "| run | accuracy (%) | ε (δ = 1e-5) | σ | C | rounds | median update norm, round 1 |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		for f in "$OUT/$g"/*.json; do
			jq -r --arg n "$(basename "$f" .json)" '"| \($n) | \(.final.accuracy*1000|round/10) | \(.final.epsilon // "–") | \(.setup.privacy.noise_multiplier // "–") | \(.setup.clip // "–") | \(.rounds|length) | \(.rounds[0].update_norm*1000|round/1000) |"' "$f"
		done
		echo
	done
}

case ${1:-} in
matrix | noniid | mlpcheck | backdoor | privacy | dpnet | strategies | compression)
	build
	"$1"
	;;
tables) tables ;;
*)
	echo "usage: $0 matrix|noniid|mlpcheck|backdoor|privacy|dpnet|strategies|compression|tables" >&2
	exit 2
	;;
esac
