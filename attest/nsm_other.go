//go:build !linux

package attest

import "fmt"

type nsmFile struct{}

func openNSM() (*nsmFile, error) {
	return nil, fmt.Errorf("%w: Nitro Enclaves run Linux", ErrUnsupported)
}

func (*nsmFile) Send([]byte) ([]byte, error) { return nil, ErrUnsupported }
