package peer

import (
	"slices"
	"sync"
	"time"
)

// Lag keeps, per database, the newest samples of replication lag: the
// time from a transaction's capture on the primary to its visibility on
// this replica. It is safe for concurrent use.
type Lag struct {
	mu  sync.Mutex
	dbs map[string]*lagRing
}

const lagSamples = 1024

type lagRing struct {
	samples [lagSamples]time.Duration
	n       int // samples recorded, ever
}

// Add records one sample.
func (l *Lag) Add(db string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dbs == nil {
		l.dbs = map[string]*lagRing{}
	}
	r := l.dbs[db]
	if r == nil {
		r = &lagRing{}
		l.dbs[db] = r
	}
	r.samples[r.n%lagSamples] = d
	r.n++
}

// LagStats summarises a database's newest samples.
type LagStats struct {
	Samples int           // how many of the newest samples the figures cover
	P50     time.Duration // median
	P99     time.Duration // 99th percentile
	Max     time.Duration
}

// Stats returns the figures of a database's newest samples; Samples is 0
// if there are none.
func (l *Lag) Stats(db string) LagStats {
	l.mu.Lock()
	r := l.dbs[db]
	var s []time.Duration
	if r != nil {
		s = append(s, r.samples[:min(r.n, lagSamples)]...)
	}
	l.mu.Unlock()
	if len(s) == 0 {
		return LagStats{}
	}
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))] }
	return LagStats{Samples: len(s), P50: q(0.50), P99: q(0.99), Max: s[len(s)-1]}
}
