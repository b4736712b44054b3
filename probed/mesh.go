package probed

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// MeshKeyPrefix marks the result key of a mesh probe's job: "mesh:<dst PoP>". Its result goes to the PoP mesh
// (storage.PutMeshRTT, from this daemon's PoP to dst) instead of a target's latest results.
const MeshKeyPrefix = "mesh:"

// meshAcceptBackoff is the pause after a failed Accept that is not the listener closing (out of file
// descriptors, say), so the loop does not spin.
const meshAcceptBackoff = 100 * time.Millisecond

// ServeMesh answers the other PoPs' mesh probes on ln until ctx is done, then closes ln. A mesh probe is a TCP
// connect: the kernel completes the handshake the RTT is timed on; ServeMesh accepts and closes each
// connection at once, so the backlog never fills and no byte is read or written.
func ServeMesh(ctx context.Context, ln net.Listener, log *slog.Logger) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warn("probed: mesh listener: accept", "err", err)
			t := time.NewTimer(meshAcceptBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		c.Close()
	}
}
