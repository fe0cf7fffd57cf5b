package mount

// crash abandons the store as a SIGKILL would: the poller stops, files and
// the data directory lock are closed, and nothing is captured or flushed.
func (s *Store) crash() {
	close(s.closed)
	s.wg.Wait()
	for _, db := range s.DBs() {
		db.mu.Lock()
		db.wal.close()
		db.closeReadFile()
		db.mu.Unlock()
	}
	s.lockf.Close()
}
