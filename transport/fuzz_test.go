package transport

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

var writeCorpus = flag.Bool("corpus", false, "rewrite the seed corpora in testdata/fuzz")

// encodeFrames packs frames the way FuzzReassemble reads them: each as a
// uvarint length and the frame's protobuf encoding.
func encodeFrames(fs []*pb.Frame) []byte {
	var b []byte
	for _, f := range fs {
		fb, err := proto.Marshal(f)
		if err != nil {
			panic(err)
		}
		b = binary.AppendUvarint(b, uint64(len(fb)))
		b = append(b, fb...)
	}
	return b
}

// fuzzLimits keeps the fuzzer's inputs small: short chunks, so that a few
// hundred bytes make a message of several chunks.
var fuzzLimits = Limits{MaxMessage: 1 << 16, ChunkSize: 16}

// reassemblerSeeds are frame sequences: valid ones and the garbage the
// tests reject.
func reassemblerSeeds() [][]byte {
	msg, _ := marshalMessage(round.Message{Kind: round.KindUpload, Round: 3, Payload: bytes.Repeat([]byte{7}, 40)})
	good := chunkFrames(1, "node-1", msg, fuzzLimits.ChunkSize)
	two := append(append([]*pb.Frame{}, good...), chunkFrames(2, "", []byte{0x08, 0x01}, fuzzLimits.ChunkSize)...)
	return [][]byte{
		encodeFrames(good),
		encodeFrames(two),
		encodeFrames([]*pb.Frame{good[0], good[2], good[1]}),
		encodeFrames([]*pb.Frame{good[1]}),
		encodeFrames([]*pb.Frame{hdr(1, 1<<40, make([]byte, 32), "")}),
		encodeFrames([]*pb.Frame{good[0], good[1], good[0]}),
		encodeFrames([]*pb.Frame{{}}),
		{0xff, 0xff, 0xff, 0xff, 0x0f},
	}
}

// FuzzReassemble feeds arbitrary frame sequences to the reassembler. It
// must never panic, never hold more than the declared (and allowed)
// length, and return only messages whose digest it checked.
func FuzzReassemble(f *testing.F) {
	for _, s := range reassemblerSeeds() {
		f.Add(s)
	}
	f.Fuzz(runReassemble)
}

func runReassemble(t *testing.T, data []byte) {
	r := newReassembler(fuzzLimits)
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			return
		}
		var fr pb.Frame
		if err := proto.Unmarshal(data[k:k+int(n)], &fr); err != nil {
			return // gRPC would have refused the frame
		}
		data = data[k+int(n):]
		var hdrDigest []byte
		if r.hdr != nil {
			hdrDigest = r.hdr.Digest
		}
		msg, _, err := r.add(&fr)
		if err != nil {
			return
		}
		if int64(len(r.buf)) > fuzzLimits.MaxMessage || len(r.buf) > r.want || cap(r.buf) > r.want {
			t.Fatalf("buffer of %d (cap %d) for a declared %d", len(r.buf), cap(r.buf), r.want)
		}
		if msg != nil {
			sum := sha256Sum(msg)
			if !bytes.Equal(sum, hdrDigest) {
				t.Fatalf("message of %d bytes returned with digest %x, header said %x", len(msg), sum, hdrDigest)
			}
			unmarshalMessage(msg) // must not panic
		}
	}
}

// messageSeeds are wire messages: random valid ones and some that fail.
func messageSeeds() [][]byte {
	r := rand.New(rand.NewPCG(7, 8))
	var seeds [][]byte
	for range 6 {
		b, err := marshalMessage(randMessage(r))
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	for _, p := range []*pb.Message{
		{Kind: 99},
		{Kind: pb.Kind_KIND_TRAIN, Cohort: []string{"node-1", "Bad Name"}},
		{Kind: pb.Kind_KIND_DECRYPT, Included: []*pb.Contribution{{Node: "node-1", Digest: []byte{1, 2, 3}}}},
		{Kind: pb.Kind_KIND_METRICS, Metrics: &pb.Metrics{Examples: -1}},
	} {
		b, _ := proto.Marshal(p)
		seeds = append(seeds, b)
	}
	return append(seeds, []byte{0x08}, []byte{0xca, 0x01, 0x01, 0xff})
}

// FuzzMessage decodes arbitrary bytes as a wire message. It must never
// panic, and whatever it accepts must encode again and decode to the same
// message.
func FuzzMessage(f *testing.F) {
	for _, s := range messageSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := unmarshalMessage(data)
		if err != nil {
			return
		}
		b, err := marshalMessage(m)
		if err != nil {
			t.Fatalf("accepted %+v but cannot encode it: %v", m, err)
		}
		m2, err := unmarshalMessage(b)
		if err != nil {
			t.Fatalf("re-encoding of %+v does not decode: %v", m, err)
		}
		if !sameMessage(m, m2) {
			t.Fatalf("re-encoding changed the message:\n%+v\n%+v", m, m2)
		}
	})
}

// TestWriteCorpus rewrites testdata/fuzz from the seeds above when run
// with -corpus.
func TestWriteCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -corpus to rewrite testdata/fuzz")
	}
	for name, seeds := range map[string][][]byte{"FuzzReassemble": reassemblerSeeds(), "FuzzMessage": messageSeeds()} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			data := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
