package gateway

import "time"

// Stats returns the server-wide counters now.
func (s *Server) Stats() ServerStats {
	st := &s.state
	r := ServerStats{
		Time:              time.Now(),
		ActiveSessions:    st.activeN.Load(),
		BytesSent:         st.bytesSent.Load(),
		PacketsSent:       st.packetsSent.Load(),
		Retransmits:       st.retransmits.Load(),
		MalformedPackets:  st.malformed.Load(),
		UnknownTIDPackets: st.unknownTID.Load(),
		WriteRequests:     st.writeRequests.Load(),
		DuplicateRequests: st.duplicates.Load(),
		DuplicateAcks:     st.dupAcks.Load(),
		BusyRefusals:      st.busy.Load(),
		IgnoredBroadcasts: st.ignoredBroadcasts.Load(),
		IntegrityFailures: st.integrityFailures.Load(),
		PolicyRefusals:    st.policyRefusals.Load(),
		PolicyDrops:       st.policyDrops.Load(),
		PortsExhausted:    st.portsExhausted.Load(),
		BytesReceived:     st.bytesReceived.Load(),
		ErrorsSent:        make(map[ErrorCode]int64),
	}
	for o := range st.outcomes {
		if n := st.outcomes[o].Load(); n > 0 {
			if r.Sessions == nil {
				r.Sessions = make(map[Outcome]int64, len(st.outcomes))
			}
			r.Sessions[Outcome(o)] = n
		}
	}
	for o := range st.uploads {
		if n := st.uploads[o].Load(); n > 0 {
			if r.Uploads == nil {
				r.Uploads = make(map[Outcome]int64, len(st.uploads))
			}
			r.Uploads[Outcome(o)] = n
		}
	}
	r.HTTPActive, r.HTTPBytesSent = st.httpActive.Load(), st.httpBytesSent.Load()
	st.httpMu.Lock()
	if len(st.httpStatus) > 0 {
		r.HTTPRequests = make(map[int]int64, len(st.httpStatus))
		for k, v := range st.httpStatus {
			r.HTTPRequests[k] = v
		}
	}
	st.httpMu.Unlock()
	for i := range st.errCounts {
		if n := st.errCounts[i].Load(); n > 0 {
			r.ErrorsSent[ErrorCode(i)] = n
		}
	}
	return r
}

func (s *Server) statsLoop(c *config, stop <-chan struct{}) {
	defer s.state.loops.Done()
	t := time.NewTicker(c.statsInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			r := s.Stats()
			r.Interval = c.statsInterval
			r.Final = true
			reportServerStats(c, r)
			return
		}
		r := s.Stats()
		r.Interval = c.statsInterval
		reportServerStats(c, r)
	}
}

// reportServerStats hands r to the callback; a panic there is logged, as
// one in SessionStatsFunc is, and the next interval is reported as usual.
func reportServerStats(c *config, r ServerStats) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("ServerStatsFunc panic", "panic", v)
		}
	}()
	c.serverStats(r)
}

// stopStats ends the stats loop after one last report.
func (s *Server) stopStats() {
	st := &s.state
	st.mu.Lock()
	ch := st.statsStop
	st.statsStop = nil
	st.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	st.loops.Wait()
}
