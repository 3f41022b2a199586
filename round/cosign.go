package round

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/cloisterfl/cloister/fl"
)

// cosignContext is audit's domain-separation prefix of a cosigned
// statement ("cloister audit cosign v1" and a zero byte).
const cosignContext = "cloister audit cosign v1\x00"

// CommitStatement returns what a round's leader cosigns when it commits:
// the statement of the coordinator's `committed` audit record for round r,
// exactly as audit.Statement computes it for kind "committed" and the data
// {session: hex(session), leader, round: r, digest: record}, where record
// is the round record's Digest. It is SHA-256 over audit's cosign context
// and the canonical JSON of the kind and that data.
//
// The leader signs it with the key that signs round records (its audit
// key, Config.Signer), and sends the signature with its Commit
// (Message.Cosign); the coordinator's engine checks it like the record's
// signature, and the coordinator's daemon appends it to its committed
// record as the leader's audit.Cosignature, which `audit verify` checks
// with the manifest's audit keys alone. round imports no audit package (a
// pure core imports no disk), so it restates the encoding; audit's tests
// check that both compute the same bytes.
func CommitStatement(session []byte, r fl.Round, leader fl.NodeID, record Digest) Digest {
	// The fields in audit.Data's order; audit omits zero values.
	type data struct {
		Session string `json:"session,omitempty"`
		Leader  string `json:"leader,omitempty"`
		Round   uint64 `json:"round,omitempty"`
		Digest  string `json:"digest,omitempty"`
	}
	d := data{Session: hex.EncodeToString(session), Leader: string(leader), Round: uint64(r)}
	if record != (Digest{}) {
		d.Digest = hex.EncodeToString(record[:])
	}
	// Strings and a number always encode: there is no error to handle.
	b, _ := json.Marshal(struct {
		Kind string `json:"kind"`
		Data data   `json:"data"`
	}{"committed", d})
	h := sha256.New()
	h.Write([]byte(cosignContext))
	h.Write(b)
	var st Digest
	h.Sum(st[:0])
	return st
}
