package gateway

// FreePorts returns how many ports of s's port range are free now; -1
// without a range (or before s serves).
func FreePorts(s *Server) int {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	if s.state.ports == nil {
		return -1
	}
	return s.state.ports.Free()
}
