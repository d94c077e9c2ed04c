// Package httpserve runs the small HTTP servers of a worker process
// (health probes, metrics): it listens before returning, so that a taken
// port is the caller's error rather than a log line nobody reads, serves in
// the background, and stops without leaving a goroutine behind.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts of a server; slow or idle clients must not pin goroutines.
// Zero fields mean no limit, as in http.Server.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// Server is a running server; see Start.
type Server struct {
	name   string
	srv    *http.Server
	addr   string
	served chan struct{}
}

// Start listens on addr (host:port) and serves h. name says which server
// it is in errors and logs ("health server").
func Start(name, addr string, h http.Handler, t Timeouts, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &Server{
		name: name,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: t.ReadHeader,
			ReadTimeout:       t.Read,
			WriteTimeout:      t.Write,
			IdleTimeout:       t.Idle,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		addr:   ln.Addr().String(),
		served: make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" failed", "addr", s.addr, "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (the port chosen for ":0").
func (s *Server) Addr() string { return s.addr }

// Shutdown stops the server, letting requests in flight finish until ctx
// is done (then it closes their connections), and waits for it to end.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("shut down %s: %w", s.name, err)
	}
	<-s.served
	return err
}
