package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc/credentials"
)

// serverTLS checks that c authenticates clients and returns a copy that
// speaks TLS 1.3 only, without session tickets.
func serverTLS(c *tls.Config) (*tls.Config, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: ServerConfig.TLS is nil (use pki.ServerConfig or Kit.TLSConfig)", ErrConfig)
	}
	if len(c.Certificates) == 0 && c.GetCertificate == nil {
		return nil, fmt.Errorf("%w: ServerConfig.TLS has no server certificate", ErrConfig)
	}
	if c.GetConfigForClient != nil {
		return nil, fmt.Errorf("%w: ServerConfig.TLS sets GetConfigForClient, which could bypass client authentication", ErrConfig)
	}
	switch c.ClientAuth {
	case tls.RequireAndVerifyClientCert:
	case tls.RequireAnyClientCert:
		if c.VerifyConnection == nil && c.VerifyPeerCertificate == nil {
			return nil, fmt.Errorf("%w: ServerConfig.TLS accepts any client certificate without verifying it", ErrConfig)
		}
	default:
		return nil, fmt.Errorf("%w: ServerConfig.TLS does not require client certificates (ClientAuth %v)", ErrConfig, c.ClientAuth)
	}
	if c.MaxVersion != 0 && c.MaxVersion < tls.VersionTLS13 {
		return nil, fmt.Errorf("%w: ServerConfig.TLS allows no TLS 1.3 (MaxVersion %#x)", ErrConfig, c.MaxVersion)
	}
	c = c.Clone()
	c.MinVersion = tls.VersionTLS13
	c.SessionTicketsDisabled = true
	return c, nil
}

// clientTLS checks that c presents a certificate and verifies the server,
// and returns a copy that speaks TLS 1.3 only, without session resumption.
func clientTLS(c *tls.Config) (*tls.Config, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: ClientConfig.TLS is nil (use pki.ClientConfig or Kit.TLSConfig)", ErrConfig)
	}
	if len(c.Certificates) == 0 && c.GetClientCertificate == nil {
		return nil, fmt.Errorf("%w: ClientConfig.TLS has no client certificate", ErrConfig)
	}
	if c.InsecureSkipVerify && c.VerifyConnection == nil && c.VerifyPeerCertificate == nil {
		return nil, fmt.Errorf("%w: ClientConfig.TLS does not verify the server (InsecureSkipVerify without VerifyConnection)", ErrConfig)
	}
	if c.MaxVersion != 0 && c.MaxVersion < tls.VersionTLS13 {
		return nil, fmt.Errorf("%w: ClientConfig.TLS allows no TLS 1.3 (MaxVersion %#x)", ErrConfig, c.MaxVersion)
	}
	c = c.Clone()
	c.MinVersion = tls.VersionTLS13
	c.ClientSessionCache = nil
	return c, nil
}

// countingCreds counts and logs refused handshakes: gRPC itself only
// closes such connections.
type countingCreds struct {
	credentials.TransportCredentials
	metrics *Metrics
	log     *slog.Logger
}

func (c countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, ai, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.metrics.reject(ReasonHandshake)
		c.log.Warn("transport: TLS handshake refused", "remote", conn.RemoteAddr().String(), "err", err)
	}
	return nc, ai, err
}

func (c countingCreds) Clone() credentials.TransportCredentials {
	return countingCreds{c.TransportCredentials.Clone(), c.metrics, c.log}
}

// refusalCreds surfaces a coordinator's refusal of the node's certificate.
// In TLS 1.3 the client finishes its handshake before the server has
// checked the client certificate; a refusal arrives as an alert on the
// first read, which gRPC would only report as a broken pipe. The
// coordinator speaks first (its HTTP/2 settings), so the handshake here
// waits for its first bytes: an alert becomes the handshake's error.
type refusalCreds struct {
	credentials.TransportCredentials
}

// acceptTimeout bounds the wait for the coordinator's first bytes when the
// handshake has no deadline.
const acceptTimeout = 20 * time.Second

func (c refusalCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(acceptTimeout)
	}
	conn.SetReadDeadline(deadline)
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	conn.SetReadDeadline(time.Time{})
	if n == 0 {
		conn.Close()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, fmt.Errorf("the coordinator refused the connection: %w", err)
	}
	return &prefixConn{Conn: conn, prefix: buf[:n]}, ai, nil
}

func (c refusalCreds) Clone() credentials.TransportCredentials {
	return refusalCreds{c.TransportCredentials.Clone()}
}

// prefixConn returns prefix before the rest of Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
