package transport

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/transport/internal/pb"
)

var testLimits = Limits{MaxMessage: 1 << 20, ChunkSize: MinChunkSize}

func hdr(seq, length uint64, digest []byte, from string) *pb.Frame {
	return &pb.Frame{Body: &pb.Frame_Header{Header: &pb.Header{Seq: seq, Length: length, Digest: digest, From: from}}}
}

func chunk(off uint64, data []byte) *pb.Frame {
	return &pb.Frame{Body: &pb.Frame_Chunk{Chunk: &pb.Chunk{Offset: off, Data: data}}}
}

func TestReassemble(t *testing.T) {
	r := newReassembler(testLimits)
	for seq, n := range []int{1, MinChunkSize, MinChunkSize + 1, 5*MinChunkSize - 3} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		fs := chunkFrames(uint64(seq+1), "node-1", msg, MinChunkSize)
		if want := 1 + (n+MinChunkSize-1)/MinChunkSize; len(fs) != want {
			t.Fatalf("%d bytes: %d frames, want %d", n, len(fs), want)
		}
		for i, f := range fs {
			got, from, err := r.add(f)
			if err != nil {
				t.Fatalf("%d bytes, frame %d: %v", n, i, err)
			}
			if last := i == len(fs)-1; last != (got != nil) {
				t.Fatalf("%d bytes, frame %d of %d: complete = %v", n, i, len(fs), got != nil)
			}
			if got != nil && (!bytes.Equal(got, msg) || from != "node-1") {
				t.Fatalf("%d bytes: reassembled %d bytes from %q", n, len(got), from)
			}
		}
	}
}

func TestReassembleRejects(t *testing.T) {
	msg := bytes.Repeat([]byte("abc"), 1000) // 3000 bytes: 3 chunks
	good := chunkFrames(1, "", msg, MinChunkSize)
	sum := sha256.Sum256(msg)
	for _, tc := range []struct {
		name   string
		frames []*pb.Frame
		want   error
		text   string
	}{
		{"empty frame", []*pb.Frame{{}}, ErrFrame, "neither header nor chunk"},
		{"chunk first", []*pb.Frame{chunk(0, msg[:10])}, ErrFrame, "chunk at offset 0 of no message"},
		{"seq 0", []*pb.Frame{hdr(0, 3000, sum[:], "")}, ErrFrame, "header of message 0, want message 1"},
		{"seq skips", []*pb.Frame{hdr(2, 3000, sum[:], "")}, ErrFrame, "want message 1"},
		{"empty message", []*pb.Frame{hdr(1, 0, sum[:], "")}, ErrFrame, "declares 0 bytes"},
		{"too large", []*pb.Frame{hdr(1, 1<<20+1, sum[:], "")}, ErrTooLarge, "declares 1048577 bytes, the limit is 1048576"},
		{"huge", []*pb.Frame{hdr(1, 1<<63, sum[:], "")}, ErrTooLarge, "declares 9223372036854775808 bytes"},
		{"short digest", []*pb.Frame{hdr(1, 3000, sum[:31], "")}, ErrFrame, "digest of 31 bytes"},
		{"long claim", []*pb.Frame{hdr(1, 3000, sum[:], strings.Repeat("a", 65))}, ErrFrame, "sender name of 65 bytes"},
		{"header twice", []*pb.Frame{good[0], good[1], hdr(2, 3000, sum[:], "")}, ErrFrame, "while message 1 has only 1024 of its 3000 bytes"},
		{"out of order", []*pb.Frame{good[0], good[1], good[3]}, ErrFrame, "chunk at offset 2048, want offset 1024 (out of order)"},
		{"repeated chunk", []*pb.Frame{good[0], good[1], good[1]}, ErrFrame, "want offset 1024"},
		{"empty chunk", []*pb.Frame{good[0], chunk(0, nil)}, ErrFrame, "empty chunk"},
		{"oversized chunk", []*pb.Frame{good[0], chunk(0, msg[:MinChunkSize+1])}, ErrFrame, "chunk of 1025 bytes, the chunk size is 1024"},
		{"overrun", []*pb.Frame{hdr(1, 10, sum[:], ""), chunk(0, msg[:11])}, ErrFrame, "overruns the declared 10 bytes"},
		{"digest mismatch", []*pb.Frame{hdr(1, 3, sum[:], ""), chunk(0, msg[:3])}, ErrFrame, "digest mismatch"},
		{"nil header", []*pb.Frame{{Body: &pb.Frame_Header{}}}, ErrFrame, "empty header"},
		{"nil chunk", []*pb.Frame{good[0], {Body: &pb.Frame_Chunk{}}}, ErrFrame, "empty chunk frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReassembler(testLimits)
			var err error
			for _, f := range tc.frames {
				var msg []byte
				if msg, _, err = r.add(f); err != nil || msg != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.text)
			}
		})
	}
}

// A declared length is never allocated up front beyond initialCap.
func TestReassembleAllocatesAsChunksArrive(t *testing.T) {
	r := newReassembler(Limits{MaxMessage: MaxMaxMessage, ChunkSize: MinChunkSize})
	if _, _, err := r.add(hdr(1, MaxMaxMessage, make([]byte, 32), "")); err != nil {
		t.Fatal(err)
	}
	if cap(r.buf) > initialCap {
		t.Fatalf("allocated %d bytes for a declared %d", cap(r.buf), int64(MaxMaxMessage))
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
