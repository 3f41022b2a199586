//go:build linux

package attest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The NSM driver's one ioctl, _IOWR(0x0A, 0, struct nsm_message): a
// request and a response buffer, each an iovec. The driver writes the
// response length back into the response iovec.
const (
	nsmDevice     = "/dev/nsm"
	nsmMaxRequest = 0x1000
)

type nsmMessage struct {
	Request, Response unix.Iovec
}

var nsmIoctl = uintptr(3<<30 | uintptr(unsafe.Sizeof(nsmMessage{}))<<16 | 0x0A<<8 | 0)

// nsmFile is the /dev/nsm device.
type nsmFile struct{ f *os.File }

func openNSM() (*nsmFile, error) {
	f, err := os.OpenFile(nsmDevice, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return &nsmFile{f: f}, nil
}

func (d *nsmFile) Close() error { return d.f.Close() }

// Send performs one NSM request.
func (d *nsmFile) Send(req []byte) ([]byte, error) {
	if len(req) == 0 || len(req) > nsmMaxRequest {
		return nil, fmt.Errorf("NSM request of %d bytes, want 1 to %d", len(req), nsmMaxRequest)
	}
	resp := make([]byte, nsmMaxResponse)
	var msg nsmMessage
	msg.Request.Base = &req[0]
	msg.Request.SetLen(len(req))
	msg.Response.Base = &resp[0]
	msg.Response.SetLen(len(resp))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), nsmIoctl, uintptr(unsafe.Pointer(&msg)))
	runtime.KeepAlive(req)
	runtime.KeepAlive(resp)
	runtime.KeepAlive(d.f)
	if errno != 0 {
		return nil, fmt.Errorf("NSM ioctl: %w", errno)
	}
	n := uint64(msg.Response.Len)
	if n > uint64(len(resp)) {
		return nil, errors.New("NSM ioctl reported a response longer than its buffer")
	}
	return resp[:n], nil
}
