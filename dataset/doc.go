// Package dataset loads training data and divides it among simulated sites.
//
// A [Set] holds labelled examples in memory; a [Split] pairs a training Set
// with a held-out test Set. A [Partition] deals a Set's examples out to n
// sites, IID or deliberately skewed, the way federated-learning papers do.
//
// # Choosing data
//
// [Open] takes a selector, the string a user types after -data:
//
//	fashion-mnist                 Fashion-MNIST from /usr/share/datasets/fashion-mnist
//	fashion-mnist:DIR             Fashion-MNIST from DIR
//	csv:PATH:label=COLUMN         a CSV file, with the class in column COLUMN
//
// [Options] set the CSV test fraction, the seed of the train/test split,
// and the [Scaling].
//
// # Fashion-MNIST
//
// [LoadFashionMNIST] reads the four IDX files (gzipped or plain) of
// Fashion-MNIST: 60,000 training and 10,000 test images of 28×28 pixels,
// scaled to [0, 1], in ten classes named in [Set.ClassNames]. On Debian
// and Ubuntu the files come from the package dataset-fashion-mnist:
//
//	apt-get install dataset-fashion-mnist
//
// When they are missing, the error wraps [ErrNotFound], so a program can
// suggest that command. Corrupt files (bad magic number, truncated data,
// trailing bytes, label and image counts that disagree) are rejected with
// an error naming the file; memory grows only as data actually arrives.
//
// # CSV
//
// [LoadCSV] reads a CSV file whose first row names the columns. One column,
// chosen by the caller, holds the label; all others must be numbers. The
// distinct labels become classes 0..K-1, sorted numerically if all are
// integers and as strings otherwise, and [Set.ClassNames] keeps their text.
// A seeded random share of the rows (20% by default) is held out for
// testing. Mistakes in the file come back as a [*ParseError] that names the
// place, like a compiler:
//
//	data.csv:17: column "age": "abc" is not a number
//
// # Normalization
//
// Features are normalized with statistics of the training set only, then
// applied unchanged to the test set, so that no test information leaks into
// training. CSV features get a z-score ([ZScore]) by default; Fashion-MNIST
// pixels stay in [0, 1] unless [ScaleZScore] is asked for. A constant
// feature standardizes to 0, never NaN. [Split.Standardize] does it by hand.
//
// # Partitioning
//
// [ParsePartition] reads a partition spec:
//
//	iid            uniform at random; every site sees about the global label mix
//	dirichlet:A    per-class site shares drawn from Dirichlet(A); A=0.1 is very skewed
//	shards:K       sort by label, cut into n·K shards, K shards per site
//
// Every Partition uses each example exactly once, leaves no site empty and
// draws all its randomness from the *rand.Rand it is given, so a seed
// reproduces a federation exactly:
//
//	p, err := dataset.ParsePartition("dirichlet:0.5")
//	...
//	sites, err := p.Split(train.Y, train.Classes, 5, rand.New(rand.NewPCG(seed, 0)))
//	...
//	local := train.Subset(sites[0])
package dataset
