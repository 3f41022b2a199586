#!/bin/sh
# Splits the Wisconsin diagnostic breast cancer data (569 patients, 30
# features; UCI, as shipped by scikit-learn) vertically between two
# hospitals, for `cloister vertical`:
#
#   hospital.csv  patient, diagnosis, the 10 "mean" features
#   lab.csv       patient, the 10 "error" and 10 "worst" features
#
# Each file lacks a seeded random 20% of the patients, so PSI has work to
# do. The source is scikit-learn's copy; on Debian it comes with the
# package python3-sklearn (or unpack it without installing:
# apt-get download python3-sklearn && dpkg -x python3-sklearn_*.deb x,
# then SRC=x/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv).
#
# Usage: examples/vertical/breast-cancer.sh OUTDIR
set -eu
out=${1:?usage: breast-cancer.sh OUTDIR}
src=${SRC:-/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv}
[ -r "$src" ] || { echo "breast-cancer.sh: $src not found: apt-get install python3-sklearn, or set SRC" >&2; exit 1; }
mkdir -p "$out"
names="radius texture perimeter area smoothness compactness concavity concave_points symmetry fractal_dimension"
awk -F, -v names="$names" -v hosp="$out/hospital.csv" -v lab="$out/lab.csv" '
BEGIN {
	srand(1); split(names, n, " ")
	printf "patient,diagnosis" > hosp; for (i = 1; i <= 10; i++) printf ",mean_%s", n[i] > hosp; print "" > hosp
	printf "patient" > lab
	for (i = 1; i <= 10; i++) printf ",error_%s", n[i] > lab
	for (i = 1; i <= 10; i++) printf ",worst_%s", n[i] > lab
	print "" > lab
}
NR == 1 { next } # scikit-learn header: 569,30,malignant,benign
{
	id = sprintf("patient-%03d", NR - 2)
	dx = ($31 == 0) ? "malignant" : "benign"
	if (rand() >= 0.2) {
		printf "%s,%s", id, dx > hosp; for (i = 1; i <= 10; i++) printf ",%s", $i > hosp; print "" > hosp
	}
	if (rand() >= 0.2) {
		printf "%s", id > lab; for (i = 11; i <= 30; i++) printf ",%s", $i > lab; print "" > lab
	}
}' "$src"
echo "wrote $out/hospital.csv ($(($(wc -l < "$out/hospital.csv") - 1)) patients) and $out/lab.csv ($(($(wc -l < "$out/lab.csv") - 1)) patients)"
