// Package embedded runs a NATS server with JetStream inside the process,
// for a single machine and for tests (plures-sync --embedded). It is a
// package of its own so that the replication package does not link the
// server.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// StoreDir holds JetStream's files (required): a server started again
	// on the same directory finds its streams.
	StoreDir string
	// Listen is host:port for clients; default (and with port 0)
	// 127.0.0.1 on a free port.
	Listen string
	// MaxPayload bounds a message; default the server's (1 MiB).
	MaxPayload int32
	// Log enables the server's log on stderr.
	Log bool
}

// Server is a running embedded server.
type Server struct{ s *server.Server }

// Start starts a server and waits until it takes connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded: StoreDir is required")
	}
	host, port := "127.0.0.1", -1 // -1: a random free port
	if o.Listen != "" {
		h, p, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: listen address %q: %w", o.Listen, err)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("embedded: listen port %q: %w", p, err)
		}
		if port == 0 {
			port = -1 // the server's 0 is its default port, 4222
		}
		if h != "" {
			host = h
		}
	}
	s, err := server.NewServer(&server.Options{
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		MaxPayload: o.MaxPayload,
		NoLog:      !o.Log,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if o.Log {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded: the server did not become ready in 10s")
	}
	return &Server{s: s}, nil
}

// URL is the URL clients connect to.
func (s *Server) URL() string { return s.s.ClientURL() }

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	if a, ok := s.s.Addr().(*net.TCPAddr); ok {
		return a.String()
	}
	return ""
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}
