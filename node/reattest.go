package node

// reattestPlan decides when a node re-attests around the key setups it takes
// part in. Its peers seal and sign setup payloads to its current session
// keys, so it does not rotate them during a setup: a re-attestation due
// then, or whose nonce comes back once a setup has started, waits for the
// setup to end, and at most one period (Config.AttestEvery): the next
// scheduled one goes ahead, setup or not, so that a run of key setups cannot
// keep the node's evidence from being renewed. The loop goroutine owns it.
type reattestPlan struct {
	deferred bool // a re-attestation waits for a key setup to end
	forced   bool // the nonce asked for is a period late: rotate even during a setup
}

// due is the AttestEvery schedule: it reports whether to ask for a nonce
// now; inSetup says whether a key setup the node takes part in is under way.
func (p *reattestPlan) due(inSetup bool) bool {
	if inSetup && !p.deferred {
		p.deferred = true
		return false
	}
	p.deferred, p.forced = false, inSetup
	return true
}

// tick reports, at every tick, whether a deferred re-attestation starts now
// (the setup is over).
func (p *reattestPlan) tick(inSetup bool) bool {
	if p.deferred && !inSetup {
		p.deferred, p.forced = false, false
		return true
	}
	return false
}

// nonce reports, when the nonce asked for arrives, whether to rotate the
// keys now; if not, a key setup started while the nonce was on its way, and
// the re-attestation waits for it to end.
func (p *reattestPlan) nonce(inSetup bool) bool {
	if inSetup && !p.forced {
		p.deferred = true
		return false
	}
	p.deferred, p.forced = false, false
	return true
}

// failed notes that no nonce came: the next schedule retries.
func (p *reattestPlan) failed() { p.forced = false }
