// Package tlsfiles builds TLS configurations from PEM files: a server's certificate, re-read when its files
// change, and a client's trusted CAs and certificate.
package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ReloadInterval is how often, at most, a handshake checks whether the certificate and key files changed (a
// stat of each): a renewed certificate (cert-manager, certbot, a rotated Kubernetes Secret) is served within
// it, without a restart.
const ReloadInterval = 10 * time.Second

// MinVersion is the oldest TLS version served or spoken: TLS 1.2, as Mozilla's "intermediate" profile.
const MinVersion = tls.VersionTLS12

// Server returns a server configuration presenting the certificate chain in certFile with the private key in
// keyFile. Both are read now; an error names the file. Afterwards they are read again when their modification
// time or size changed (checked at most every ReloadInterval); a new pair that does not load is logged to log
// (nil: discarded) and the previous one kept.
func Server(certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	kp, err := newKeyPair(certFile, keyFile, log, ReloadInterval)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: MinVersion, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return kp.get(), nil
	}}, nil
}

// Client configures a TLS client. The zero value trusts the system's CAs (on Linux, $SSL_CERT_FILE and
// $SSL_CERT_DIR name others) and presents no certificate.
type Client struct {
	// CA is a PEM file of the CAs to trust instead of the system's (empty: the system's).
	CA string
	// Cert and Key are a PEM certificate chain and its private key presented to servers that ask for one
	// (both or neither); they are re-read when they change, as Server's.
	Cert, Key string
	// ServerName is the name the server's certificate must carry (empty: the host of the address dialled).
	ServerName string
}

// Config returns the client configuration c describes, logging reload failures to log (nil: discarded); an
// error names the file that could not be read or used.
func (c Client) Config(log *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: MinVersion, ServerName: c.ServerName}
	if c.CA != "" {
		pool, err := CertPool(c.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.Cert == "" && c.Key == "":
	case c.Cert == "" || c.Key == "":
		return nil, errors.New("tls: a client certificate needs both its certificate and its key file")
	default:
		kp, err := newKeyPair(c.Cert, c.Key, log, ReloadInterval)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get(), nil }
	}
	return cfg, nil
}

// CertPool returns a pool of the PEM certificates in file; a file holding none is an error.
func CertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls: CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// keyPair is a certificate and its key, read again from their files when they change.
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger
	interval          time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    [2]stamp  // the files' stamps at the last load attempt
	checked time.Time // the last time the stamps were compared
}

// stamp tells whether a file changed.
type stamp struct {
	mod  time.Time
	size int64
}

func newKeyPair(certFile, keyFile string, log *slog.Logger, interval time.Duration) (*keyPair, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &keyPair{certFile: certFile, keyFile: keyFile, log: log, interval: interval, checked: time.Now()}
	k.seen = k.stamps()
	cert, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	k.cert = cert
	return k, nil
}

// load reads and parses a certificate chain and its key; an error names the file at fault.
func load(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: key file: %w", err)
	}
	if !bytes.Contains(certPEM, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("tls: certificate file %s: no PEM block in it", certFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

func (k *keyPair) stamps() [2]stamp {
	var s [2]stamp
	for i, f := range []string{k.certFile, k.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s[i] = stamp{fi.ModTime(), fi.Size()}
		}
	}
	return s
}

// get returns the current certificate, first loading the files again when they changed.
func (k *keyPair) get() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := time.Now(); now.Sub(k.checked) >= k.interval {
		k.checked = now
		if s := k.stamps(); s != k.seen {
			k.seen = s // a pair that fails is tried again only once it changes again
			cert, err := load(k.certFile, k.keyFile)
			if err != nil {
				k.log.Warn("tls: keeping the previous certificate", "err", err)
			} else {
				k.cert = cert
				k.log.Info("tls: certificate reloaded", "cert", k.certFile)
			}
		}
	}
	return k.cert
}
