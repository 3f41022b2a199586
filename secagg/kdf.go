package secagg

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// Key derivation: HKDF-SHA256 (RFC 5869). Every key is at most one hash
// long, so Expand is its first block, HMAC(PRK, info ‖ 0x01); extract and
// expand below are held equal to crypto/hkdf by TestHKDF. Each info string
// starts with a label that names the key's use, so no two uses share a key.

// extract is HKDF-Extract(salt, secret).
func extract(salt, secret []byte) [32]byte {
	m := hmac.New(sha256.New, salt)
	m.Write(secret)
	var k [32]byte
	m.Sum(k[:0])
	return k
}

// expand is HKDF-Expand(prk, info, 32).
func expand(prk [32]byte, info []byte) [32]byte {
	m := hmac.New(sha256.New, prk[:])
	m.Write(info)
	m.Write([]byte{1})
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func info(label string, nums ...uint64) []byte {
	b := append([]byte("cloister/secagg/v1 "), label...)
	for _, x := range nums {
		b = binary.BigEndian.AppendUint64(b, x)
	}
	return b
}

func toSeed(k [32]byte) (s seed) {
	copy(s[:], k[:seedLen])
	return s
}

// pairKey is the long-lived key of members a < b for one setup: HKDF of
// their X25519 shared secret, salted with the setup transcript.
func pairKey(shared []byte, transcript [32]byte, a, b int) [32]byte {
	return expand(extract(transcript[:], shared), info("pair", uint64(a), uint64(b)))
}

// maskSeed is the seed of the pairwise mask of a pair in round r.
func maskSeed(pair [32]byte, r uint64) seed { return toSeed(expand(pair, info("mask", r))) }

// shareKey is the AES-128-CTR key that encrypts the shares dealer deals to
// recipient in round r, under their pair key.
func shareKey(pair [32]byte, r uint64, dealer, recipient int) seed {
	return toSeed(expand(pair, info("share", r, uint64(dealer), uint64(recipient))))
}

// groupMaskKey is the members' common key, from every member's
// contribution (in member order), salted with the transcript.
func groupMaskKey(contribs []byte, transcript [32]byte) [32]byte {
	return expand(extract(transcript[:], contribs), info("group mask"))
}

// roundKey is the group mask key of round r: what revealers seal to the
// target, so that the target opens the group mask of that round and no
// other.
func roundKey(km [32]byte, r uint64) [32]byte { return expand(km, info("round", r)) }

// memberMask is the seed of member v's group mask in the round of rk.
func memberMask(rk [32]byte, v int) seed { return toSeed(expand(rk, info("member", uint64(v)))) }
