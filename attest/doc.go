// Package attest proves to a verifier that a Cloister node runs the
// expected code in a genuine trusted execution environment, and binds that
// proof to the node's TLS session and session keys.
package attest
